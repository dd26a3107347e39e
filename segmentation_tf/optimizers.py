"""Optimisers with every hyper-parameter explicit, Keras side, computing torch's update rules.

Two Keras defaults differ from torch and are replaced here on purpose:
- ``keras.optimizers.Adam`` puts epsilon *after* folding both bias corrections into the step size
  ("epsilon hat" of Kingma & Ba, section 2), torch adds it to ``sqrt(v_hat)``; ``_TorchAdam`` uses
  torch's placement. The two differ wherever ``|g|`` is within a few orders of ``eps``.
- Keras ``weight_decay`` is decoupled (AdamW style); torch's ``weight_decay`` adds L2 to the
  gradient. Both classes here add ``weight_decay * w`` to the gradient, as torch does.
- Keras SGD keeps ``m = momentum * m - lr * g; w += m``, torch ``b = momentum * b + g; w -= lr * b``.
  The two agree for a constant learning rate only up to rounding, and their momentum slots differ by
  a factor ``-lr``; ``_TorchSGD`` keeps torch's ``b``, so the slot is the canonical checkpoint's
  ``momentum_buffer`` as it is and a resumed run continues bit for bit.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from segmentation_tf.weights import tensor_refs
from segparity.weights.layout import permute_axes

OPTIMIZERS = ("sgd", "adam")
# optimiser -> its per-parameter state, named as torch names it (canonical names of the checkpoint)
SLOTS = {"sgd": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq")}


def _coupled_gradient(gradient, variable, l2: float):
    """The gradient in the variable's dtype, plus torch's coupled L2 term ``l2 * w``."""
    gradient = ops.cast(gradient, variable.dtype)
    return gradient + l2 * variable if l2 else gradient


class _TorchSGD(keras.optimizers.SGD):
    """SGD with torch's update: ``b = momentum * b + g; w -= lr * b`` (``b = g`` on the first step, as
    torch's zero-initialised buffer gives too), with torch's coupled L2 ``weight_decay``."""

    def __init__(self, *, l2: float, **kwargs):
        super().__init__(**kwargs)
        self.l2 = l2

    def update_step(self, gradient, variable, learning_rate):
        gradient = _coupled_gradient(gradient, variable, self.l2)
        if self.momentum:
            buffer = self.momentums[self._get_variable_index(variable)]
            self.assign(buffer, buffer * self.momentum + gradient)
            gradient = buffer
        self.assign_sub(variable, ops.cast(learning_rate, variable.dtype) * gradient)


class _TorchAdam(keras.optimizers.Adam):
    """Adam with torch's update: ``w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``."""

    def __init__(self, *, l2: float, **kwargs):
        super().__init__(**kwargs)
        self.l2 = l2

    def update_step(self, gradient, variable, learning_rate):
        gradient = _coupled_gradient(gradient, variable, self.l2)
        # Bias corrections in float64, then rounded once, as torch computes them in Python floats.
        # (ops.cast(0.999, "float64") would round 0.999 to float32 first: pitfall keras_cast_python_float.)
        step = ops.cast(self.iterations + 1, "float64")
        bias_correction1 = 1 - ops.power(ops.convert_to_tensor(self.beta_1, dtype="float64"), step)
        bias_correction2 = 1 - ops.power(ops.convert_to_tensor(self.beta_2, dtype="float64"), step)
        step_size = ops.cast(ops.cast(learning_rate, "float64") / bias_correction1, variable.dtype)
        bias_correction2_sqrt = ops.cast(ops.sqrt(bias_correction2), variable.dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))
        self.assign(v, v * self.beta_2 + ops.square(gradient) * (1 - self.beta_2))
        denom = ops.sqrt(v) / bias_correction2_sqrt + self.epsilon
        self.assign_sub(variable, step_size * m / denom)


def build_optimizer(model: keras.Model, name: str, *, lr: float, momentum: float = 0.0,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                    weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """``"sgd"``: heavy-ball ``momentum``, no Nesterov. ``"adam"``: torch's Adam (eps outside the sqrt).
    ``weight_decay`` is L2 added to the gradient (torch's coupled form) in both. Built for ``model``'s
    trainable variables.
    """
    if name == "sgd":
        optimizer = _TorchSGD(learning_rate=lr, momentum=momentum, nesterov=False, l2=weight_decay, name="sgd")
    elif name == "adam":
        optimizer = _TorchAdam(learning_rate=lr, beta_1=betas[0], beta_2=betas[1], epsilon=eps, l2=weight_decay,
                               name="adam")  # the class name would make an invalid name scope in fit
    else:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    optimizer.build(model.trainable_variables)
    return optimizer


class _LegacyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``lr * (1 / (1 + lr_decay * iterations))`` in float64, as torch's ``LambdaLR`` computes it in Python floats
    (Keras 3's ``InverseTimeDecay`` would compute it in float32)."""

    def __init__(self, lr: float, lr_decay: float):
        self.lr, self.lr_decay = lr, lr_decay

    def __call__(self, step):
        step = ops.cast(step, "float64")
        lr = ops.convert_to_tensor(self.lr, dtype="float64")  # from the Python float: no float32 rounding first
        return lr * (1.0 / (1.0 + ops.convert_to_tensor(self.lr_decay, dtype="float64") * step))

    def get_config(self):
        return {"lr": self.lr, "lr_decay": self.lr_decay}


def legacy_decay(optimizer: keras.optimizers.Optimizer, lr: float, lr_decay: float, step: int = 0) -> _LegacyDecay:
    """Keras 2's legacy ``decay`` argument (gone in Keras 3) as a schedule: optimiser step ``t`` (0-based) uses
    ``lr * (1 / (1 + lr_decay * t))`` (``segparity.training.config.decayed_lr``). It replaces ``optimizer``'s
    learning rate and reads ``optimizer.iterations``, so ``step`` (the steps already taken) must equal them."""
    taken = int(ops.convert_to_numpy(optimizer.iterations))  # a MirroredVariable under a strategy: no int() of its own
    if step != taken:
        raise ValueError(f"step {step} differs from the optimizer's iterations {taken}: load the optimizer state first")
    schedule = _LegacyDecay(lr, lr_decay)  # the Python float, not the optimizer's float32 variable
    optimizer.learning_rate = schedule
    return schedule


def _slot_variables(optimizer: keras.optimizers.Optimizer) -> dict[str, list]:
    """Canonical slot name -> the Keras optimiser's list of per-variable slots."""
    if isinstance(optimizer, _TorchAdam):
        return {"exp_avg": optimizer._momentums, "exp_avg_sq": optimizer._velocities}
    return {"momentum_buffer": optimizer.momentums} if optimizer.momentum else {}


def optimizer_state(model: keras.Model, optimizer: keras.optimizers.Optimizer, step: int) -> dict[str, np.ndarray]:
    """The optimiser's state in canonical layout: ``"<weight key>.<slot>"`` float32 arrays shaped like
    the weight (slots ``SLOTS``, in torch's convention) and ``"step"``, the steps taken (int64, shape (1,)).
    Weights without state yet (no step taken) are left out."""
    state = {"step": np.asarray([step], dtype=np.int64)}
    if step == 0:
        return state
    for key, (variable, axes, canon) in tensor_refs(model).items():
        if not variable.trainable:
            continue
        index = optimizer._get_variable_index(variable)
        for slot, variables in _slot_variables(optimizer).items():
            value = np.asarray(ops.convert_to_numpy(variables[index]), dtype=np.float32)
            state[f"{key}.{slot}"] = permute_axes(value, axes, canon)
    return state


def load_optimizer_state(model: keras.Model, optimizer: keras.optimizers.Optimizer, state: dict[str, np.ndarray]) -> int:
    """Put ``optimizer_state``'s arrays back into ``optimizer`` (for ``model``'s weights); return the step.
    Keys that do not belong to this model and optimiser are an error naming them."""
    expected = {"step"}
    step = int(state["step"][0]) if "step" in state else 0
    for key, (variable, axes, canon) in tensor_refs(model).items():
        if not variable.trainable:
            continue
        index = optimizer._get_variable_index(variable)
        for slot, variables in _slot_variables(optimizer).items():
            name = f"{key}.{slot}"
            if name in state:
                expected.add(name)
                variables[index].assign(permute_axes(state[name], canon, axes))
    unexpected = sorted(set(state) - expected)
    if unexpected:
        raise ValueError(f"optimizer state has key(s) this model and optimizer do not use: {', '.join(unexpected[:5])}")
    optimizer.iterations.assign(step)
    return step
