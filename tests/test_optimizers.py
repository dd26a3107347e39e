"""Optimiser formulas: torch's SGD and Adam and their Keras twins agree on identical gradients,
at torch's default Adam epsilon, over several steps; Keras's stock Adam does not (pitfall)."""

import keras
import numpy as np
import pytest
import torch

from segmentation_tf.optimizers import build_optimizer as build_keras
from segmentation_torch.optimizers import build_optimizer as build_torch
from segparity.comparison.tolerance import assert_close, compare


class _TorchParams(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.from_numpy(w.copy()))


class _KerasParams(keras.Model):
    def __init__(self, w):
        super().__init__()
        self.w = self.add_weight(shape=w.shape, initializer="zeros", name="w")
        self.w.assign(w)


def _run(name, w0, grads, keras_optimizer=None, **kwargs):
    tm, km = _TorchParams(w0), _KerasParams(w0)
    t_opt = build_torch(tm, name, **kwargs)
    k_opt = keras_optimizer or build_keras(km, name, **kwargs)
    for g in grads:
        tm.w.grad = torch.from_numpy(g.copy())
        t_opt.step()
        k_opt.apply_gradients([(keras.ops.convert_to_tensor(g), km.w)])
    return tm.w.detach().numpy(), km.w.numpy()


# Gradients spanning rounding level to large, where Adam's epsilon placement matters.
W0 = np.random.default_rng(0).normal(size=200).astype(np.float32)
GRADS = [np.random.default_rng(s).normal(size=200).astype(np.float32) * np.logspace(-9, 0, 200).astype(np.float32)
         for s in (1, 2, 3)]


@pytest.mark.parametrize("kwargs", [dict(lr=0.1, momentum=0.0), dict(lr=0.1, momentum=0.9),
                                    dict(lr=0.05, momentum=0.9, weight_decay=0.01)])
def test_sgd_agrees(kwargs):
    w_t, w_k = _run("sgd", W0, GRADS, **kwargs)
    assert_close(w_k, w_t, quantity="SGD, 3 steps")


@pytest.mark.parametrize("kwargs", [dict(lr=1e-3), dict(lr=1e-3, eps=1e-8, betas=(0.8, 0.99)),
                                    dict(lr=1e-2, weight_decay=0.1)])
def test_adam_agrees_at_torch_default_epsilon(kwargs):
    w_t, w_k = _run("adam", W0, GRADS, **kwargs)
    assert_close(w_k, w_t, quantity="Adam, 3 steps", atol=1e-7)


def test_pitfall_keras_stock_adam_epsilon_placement():
    """keras.optimizers.Adam adds epsilon after folding the bias corrections into the step size
    ("epsilon hat"): on the first step its effective epsilon is eps / sqrt(1 - beta_2) = 31.6 eps."""
    g = [np.full(200, 3e-7, np.float32) * np.linspace(0.1, 10, 200).astype(np.float32)]
    stock = keras.optimizers.Adam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    w_t, w_stock = _run("adam", W0, g, keras_optimizer=stock, lr=1e-3, eps=1e-8)
    naive = compare(w_stock, w_t)
    assert not naive.passed and naive.max_abs > 1e-4, naive
    w_t, w_fixed = _run("adam", W0, g, lr=1e-3, eps=1e-8)
    assert_close(w_fixed, w_t, quantity="fixed Adam")


def test_pitfall_adam_first_step_conditioning():
    """Two gradients equal to within the proven gradient tolerance (1e-5 of max|g| = 1) give first
    Adam steps 1e-4 apart at eps=1e-8 (slope lr/eps), in one and the same framework; with
    eps >= lr * max|g| (the parity runs' setting) the steps agree within atol."""
    g1 = np.array([1.0, 2e-8, -3e-8, 5e-7], np.float32)
    g2 = g1 + np.array([0.0, 5e-9, 4e-9, -3e-8], np.float32)  # differences of float32 gradient rounding
    assert compare(g2, g1, scale=1.0).passed
    w0 = np.zeros(4, np.float32)
    for eps, should_pass in ((1e-8, False), (1e-3, True)):
        a = _TorchParams(w0); b = _TorchParams(w0)
        for model, g in ((a, g1), (b, g2)):
            opt = build_torch(model, "adam", lr=1e-3, eps=eps)
            model.w.grad = torch.from_numpy(g)
            opt.step()
        result = compare(b.w.detach().numpy(), a.w.detach().numpy())
        assert result.passed == should_pass, (eps, result)


def test_pitfall_keras_sgd_momentum_convention():
    """Keras SGD keeps ``m = momentum*m - lr*g`` (the lr inside the buffer), torch ``b = momentum*b + g``.
    With a constant lr they step alike; once the lr changes (a schedule, or a run resumed with another
    lr) the stock Keras optimiser still carries the old lr in its buffer. segparity's keeps torch's b."""
    rng = np.random.default_rng(3)
    w0, g1, g2 = (rng.normal(size=(4, 3)).astype(np.float32) for _ in range(3))

    def two_steps(model, optimizer, set_lr, step):
        step(model, optimizer, g1)
        set_lr(optimizer, 0.01)
        step(model, optimizer, g2)

    def torch_step(model, optimizer, g):
        model.w.grad = torch.from_numpy(g.copy())
        optimizer.step()

    def keras_step(model, optimizer, g):
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), model.w)])

    def torch_lr(optimizer, lr):
        optimizer.param_groups[0]["lr"] = lr

    def keras_lr(optimizer, lr):
        optimizer.learning_rate = lr

    tm = _TorchParams(w0)
    two_steps(tm, build_torch(tm, "sgd", lr=0.1, momentum=0.9), torch_lr, torch_step)
    expected = w0 - 0.1 * g1 - 0.01 * (0.9 * g1 + g2)
    assert np.allclose(tm.w.detach().numpy(), expected, atol=1e-6)
    results = {}
    for label, make in (("fixed", lambda m: build_keras(m, "sgd", lr=0.1, momentum=0.9)),
                        ("naive", lambda m: keras.optimizers.SGD(learning_rate=0.1, momentum=0.9))):
        km = _KerasParams(w0)
        two_steps(km, make(km), keras_lr, keras_step)
        results[label] = compare(tm.w.detach().numpy(), keras.ops.convert_to_numpy(km.w), rtol=1e-5, atol=1e-6)
    assert results["fixed"].passed, results["fixed"]
    assert not results["naive"].passed  # off by 0.9 * (0.1 - 0.01) * g1
    assert results["naive"].max_abs > 0.05


def test_pitfall_keras_cast_python_float():
    """``keras.ops.cast(0.999, "float64")`` makes a float32 tensor of the Python float first: 0.999 becomes
    0.9990000128746033, and Adam's ``1 - beta_2 ** t`` is then off by 1.3e-5 relative at step 1 (a 6.4e-6
    relative error in every early step, in float32 and float64 alike). torch computes its bias corrections
    in Python floats; segparity's Keras Adam computes them in float64 from ``convert_to_tensor(beta,
    dtype="float64")``, so in float64 it equals torch's Adam to rounding."""
    from keras import ops

    from segmentation_tf.device import precision

    assert float(ops.cast(0.999, "float64")) == float(np.float32(0.999)) != 0.999  # the trap
    assert float(ops.convert_to_tensor(0.999, dtype="float64")) == 0.999  # the fix
    rng = np.random.default_rng(5)
    w0 = rng.normal(size=(200,))
    grads = [rng.normal(size=(200,)) * 10.0 ** rng.uniform(-6, 0, size=200) for _ in range(3)]
    tm = _TorchParams(w0)
    t_opt = build_torch(tm, "adam", lr=1e-3)
    with precision("float64"):
        km = _KerasParams(w0)
        k_opt = build_keras(km, "adam", lr=1e-3)
    for g in grads:
        tm.w.grad = torch.from_numpy(g.copy())
        t_opt.step()
        k_opt.apply_gradients([(ops.convert_to_tensor(g), km.w)])
    moved = tm.w.detach().numpy() - w0
    gap = np.abs(keras.ops.convert_to_numpy(km.w) - tm.w.detach().numpy()).max() / np.abs(moved).max()
    assert km.w.dtype == "float64" and gap < 1e-12, gap  # with the trap, 6.7e-6


@pytest.mark.parametrize("name, kwargs", [("adam", dict(lr=3e-4)), ("sgd", dict(lr=0.1, momentum=0.9))])
def test_legacy_decay_agrees_and_is_keras_2s_formula(name, kwargs):
    """Keras 2's ``decay`` (lr * 1 / (1 + decay * t)), as torch's LambdaLR and as segparity's Keras schedule: the
    learning rates of steps 0..3 are decayed_lr's, to the last bit in float64, and the weights agree after 3 steps.
    A decay of 0.5 per step makes the schedule matter (the lesson's 8e-9 changes 300 steps' lr by 2.4e-6)."""
    from segmentation_tf.optimizers import legacy_decay as decay_keras
    from segmentation_torch.optimizers import legacy_decay as decay_torch
    from segparity.training.config import decayed_lr

    tm, km = _TorchParams(W0), _KerasParams(W0)
    t_opt, k_opt = build_torch(tm, name, **kwargs), build_keras(km, name, **kwargs)
    t_schedule, k_schedule = decay_torch(t_opt, kwargs["lr"], 0.5), decay_keras(k_opt, kwargs["lr"], 0.5)
    for step, g in enumerate(GRADS):
        assert t_opt.param_groups[0]["lr"] == decayed_lr(kwargs["lr"], 0.5, step)
        assert float(k_schedule(k_opt.iterations)) == decayed_lr(kwargs["lr"], 0.5, step)
        tm.w.grad = torch.from_numpy(g.copy())
        t_opt.step()
        t_schedule.step()
        k_opt.apply_gradients([(keras.ops.convert_to_tensor(g), km.w)])
    assert_close(km.w.numpy(), tm.w.detach().numpy(), quantity=f"{name} with legacy decay, 3 steps", atol=1e-7)
    without = _run(name, W0, GRADS, **kwargs)[0]
    assert compare(without, tm.w.detach().numpy()).max_abs > 0.5 * kwargs["lr"]  # the decay changed the steps
    # a resumed run starts at its step, in both
    assert decay_torch(build_torch(_TorchParams(W0), name, **kwargs), kwargs["lr"], 0.5, step=3).get_last_lr()[0] \
        == decayed_lr(kwargs["lr"], 0.5, 3)
    with pytest.raises(ValueError, match="step 3 differs from the optimizer's iterations 0"):
        decay_keras(build_keras(_KerasParams(W0), name, **kwargs), kwargs["lr"], 0.5, step=3)
