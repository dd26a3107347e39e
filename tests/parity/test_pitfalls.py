"""The pitfall gallery, U-Net part: each test shows the naive port diverging (error asserted large)
and the fixed port agreeing (error asserted small). docs/pitfalls.md explains each one."""

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segmentation_tf.layers import BatchNorm as KerasBatchNorm
from segmentation_tf.layers import upsample_bilinear_2x as keras_upsample
from segmentation_torch.layers import BatchNorm as TorchBatchNorm
from segmentation_torch.layers import upsample_bilinear_2x as torch_upsample
from segparity.parity import suite
from segparity.comparison.tolerance import ATOL, assert_close, compare
from segparity.comparison.trace import TraceSettings, compare_traces, summarise


def _nhwc(x):
    return np.moveaxis(x, 1, -1)


def _nchw(x):
    return np.moveaxis(keras.ops.convert_to_numpy(x), -1, 1)


def test_planted_transposed_kernel_is_caught():
    """A test must be able to fail: hand Keras one 3x3 kernel with H and W swapped (a wrong
    OIHW -> HWIO transfer). The parity run flags the logits; the correct transfer passes."""
    case = suite.unet_cases(seed=5)[0]
    spec, settings = case.spec(), TraceSettings(class_weights=(1.0, 1.5, 2.0))
    weights = suite.harness("torch").random_weights(spec, case.seed)
    inputs = suite.case_inputs(case, settings)
    images, labels = inputs.images, inputs.labels
    reference = suite.harness("torch").compute_trace(spec, weights, images, labels, settings)

    planted = dict(weights)
    planted["encoder.1.conv1.weight"] = np.ascontiguousarray(weights["encoder.1.conv1.weight"].transpose(0, 1, 3, 2))
    wrong = summarise(compare_traces(suite.harness("tf").compute_trace(spec, planted, images, labels, settings), reference))
    by_name = {row.quantity: row for row in wrong}
    assert not by_name["logits_eval"].passed and by_name["logits_eval"].max_abs > 5 * by_name["logits_eval"].atol
    assert not by_name["grad_weights_ce"].passed

    right = summarise(compare_traces(suite.harness("tf").compute_trace(spec, weights, images, labels, settings), reference))
    assert all(row.passed for row in right)


def _bn_pair(x, keras_layer, torch_momentum=0.1, eps=1e-5):
    """One training-mode call of torch BN and a Keras BN layer on the same (N, C, H, W) batch."""
    rng = np.random.default_rng(1)
    c = x.shape[1]
    stats = dict(mean=rng.normal(0, 0.1, c).astype(np.float32), var=rng.uniform(0.5, 1.5, c).astype(np.float32))
    torch_bn = TorchBatchNorm(c, eps=eps, momentum=torch_momentum).train()
    with torch.no_grad():
        torch_bn.running_mean.copy_(torch.from_numpy(stats["mean"]))
        torch_bn.running_var.copy_(torch.from_numpy(stats["var"]))
    y_torch = torch_bn(torch.from_numpy(x)).detach().numpy()
    keras_layer.build((None, None, None, c)) if not keras_layer.built else None
    keras_layer.moving_mean.assign(stats["mean"])
    keras_layer.moving_variance.assign(stats["var"])
    y_keras = _nchw(keras_layer(_nhwc(x), training=True))
    return (y_torch, torch_bn.running_mean.numpy(), torch_bn.running_var.numpy()), \
           (y_keras, keras_layer.moving_mean.numpy(), keras_layer.moving_variance.numpy())


X_BN = np.random.default_rng(0).normal(0.5, 2.0, size=(2, 3, 5, 5)).astype(np.float32)


def test_pitfall_bn_momentum_convention():
    """torch momentum 0.1 weights the *new* statistic; Keras momentum weights the *old* one."""
    (_, mean_t, _), (_, mean_naive, _) = _bn_pair(X_BN, KerasBatchNorm(3, eps=1e-5, momentum=0.1))
    assert compare(mean_naive, mean_t).max_abs > 1e-2
    (_, mean_t, _), (_, mean_fixed, _) = _bn_pair(X_BN, KerasBatchNorm(3, eps=1e-5, momentum=1 - 0.1))
    assert_close(mean_fixed, mean_t, quantity="running mean")


def test_pitfall_bn_running_variance_is_unbiased_in_torch():
    """keras.layers.BatchNormalization updates moving_variance with the biased batch variance,
    torch with the unbiased one (n / (n - 1)); segparity's Keras BatchNorm does what torch does."""
    stock = keras.layers.BatchNormalization(axis=-1, momentum=0.9, epsilon=1e-5)
    (y_t, _, var_t), (y_k, _, var_naive) = _bn_pair(X_BN, stock)
    assert_close(y_k, y_t, quantity="outputs agree")  # normalisation itself matches ...
    naive = compare(var_naive, var_t)
    assert not naive.passed and naive.max_rel > 1e-3  # ... the running variance does not
    (_, _, var_t), (_, _, var_fixed) = _bn_pair(X_BN, KerasBatchNorm(3, eps=1e-5, momentum=0.9))
    assert_close(var_fixed, var_t, quantity="running var")


def test_pitfall_bn_epsilon_defaults():
    """Keras BatchNormalization's default epsilon is 1e-3, torch's 1e-5: small-variance channels differ."""
    x = (np.random.default_rng(2).normal(size=(2, 3, 6, 6)) * 0.02).astype(np.float32)
    (y_t, _, _), (y_naive, _, _) = _bn_pair(x, keras.layers.BatchNormalization(momentum=0.9))
    assert compare(y_naive, y_t).max_abs > 1e-2
    (y_t, _, _), (y_fixed, _, _) = _bn_pair(x, KerasBatchNorm(3, eps=1e-5, momentum=0.9))
    assert_close(y_fixed, y_t, quantity="BN output")


def test_pitfall_bn_batch_statistics_accumulation():
    """torch's CPU BatchNorm sums batch statistics in float64; float32 sums (tf.nn.moments) lose
    ~1e-4 on a channel whose mean is 100x its spread. segparity's Keras BatchNorm sums in float64."""
    x = (1.0 + 0.01 * np.random.default_rng(0).normal(size=(4, 4, 64, 64))).astype(np.float32)
    y_t = TorchBatchNorm(4, eps=1e-5, momentum=0.1).train()(torch.from_numpy(x)).detach().numpy()
    mean, var = keras.ops.moments(_nhwc(x), axes=[0, 1, 2])  # float32, as keras.layers.BatchNormalization
    y_naive = _nchw((_nhwc(x) - mean) * keras.ops.rsqrt(var + 1e-5))
    assert compare(y_naive, y_t).max_abs > 5e-5
    y_fixed = _nchw(KerasBatchNorm(4, eps=1e-5, momentum=0.9)(_nhwc(x), training=True))
    assert_close(y_fixed, y_t, quantity="BN output")


def test_pitfall_bilinear_resize_conventions():
    """torch align_corners=True and Keras UpSampling2D's default (nearest) both differ from
    half-pixel bilinear; segparity uses half-pixel centres (align_corners=False) in both."""
    x = np.random.default_rng(3).normal(size=(2, 3, 5, 7)).astype(np.float32)
    reference = torch_upsample(torch.from_numpy(x)).numpy()
    corners = F.interpolate(torch.from_numpy(x), scale_factor=2, mode="bilinear", align_corners=True).numpy()
    nearest = _nchw(keras.layers.UpSampling2D(size=2)(_nhwc(x)))
    assert compare(corners, reference).max_abs > 1e-2
    assert compare(nearest, reference).max_abs > 1e-2
    assert_close(_nchw(keras_upsample(_nhwc(x))), reference, quantity="bilinear x2")


def test_pitfall_bias_before_batch_norm_has_no_gradient():
    """Why segparity's up-sampling layer has no bias when BN is on: with valid padding a per-channel
    bias feeding conv -> BN is removed exactly by BN, so its gradient is zero up to rounding, and
    parity of it would compare noise with noise (seen in torch and Keras alike)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, 3, padding=0, bias=False)
    bn = TorchBatchNorm(4, eps=1e-5, momentum=0.1).train()
    x = torch.randn(2, 4, 12, 12)
    bias = torch.zeros(4, requires_grad=True)
    out = bn(conv(x + bias[None, :, None, None]))
    (out * torch.randn_like(out)).sum().backward()
    weight_scale = conv.weight.grad.abs().max().item()
    assert bias.grad.abs().max().item() < 1e-6 * weight_scale


@pytest.mark.parametrize("size", [5, 7])
def test_center_crop_odd_difference_agrees(size):
    """Cropping a skip whose size differs by an odd amount cuts the extra row at the bottom/right in both."""
    from segmentation_tf.layers import center_crop as keras_crop
    from segmentation_torch.layers import center_crop as torch_crop

    x = np.arange(2 * 3 * 10 * 10, dtype=np.float32).reshape(2, 3, 10, 10)
    expected = torch_crop(torch.from_numpy(x), size, size).numpy()
    assert np.array_equal(_nchw(keras_crop(_nhwc(x), size, size)), expected)


def test_pitfall_bn_small_variance_conditioning():
    """Not a port error: raw [0, 1] images through a 2-filter first layer leave a BN channel with
    batch variance ~1e-3; BN's backward amplifies float32 cancellation by 1/sigma, and *both*
    frameworks' input gradients miss the float64 value by more than atol (~5e-5 of the gradient's
    scale). Parity runs therefore standardise inputs (``segparity.data.synthetic.standardize``)."""
    from segmentation_torch import build_model, from_canonical
    from segmentation_torch.losses import CrossEntropyLoss
    from segparity.networks.geometry import center_crop_labels
    from segparity.data.synthetic import synthetic_batch

    case = suite.Case("unet", dict(base_channels=2, depth=2, padding="valid", upsample="bilinear", batch_norm=True),
                      batch=1, size=48, seed=315, weights_from="tf", in_channels=1, num_classes=2)
    spec, settings = case.spec(), TraceSettings(class_weights=(1.0, 1.5))
    weights = suite.harness("tf").random_weights(spec, case.seed)
    images, labels = synthetic_batch(1, 1, 48, 48, 2, case.seed, ignore_index=255, ignore_fraction=0.05)
    labels = center_crop_labels(labels, 8, 8)  # 48 -> 8 with depth 2, valid padding
    traces = {fw: suite.harness(fw).compute_trace(spec, weights, images, labels, settings) for fw in ("torch", "tf")}

    model = from_canonical(build_model("unet", **spec.options()), weights).double().train()
    x = torch.from_numpy(images).double().requires_grad_(True)
    CrossEntropyLoss(class_weights=settings.class_weights, ignore_index=255)(model(x), torch.from_numpy(labels)).backward()
    exact = x.grad.numpy()
    scale = float(np.abs(exact).max())
    for fw in ("torch", "tf"):
        assert not compare(traces[fw]["grad_input_ce"], exact, scale=scale).passed, fw  # float32 itself misses
    standardised = np.asarray(images - images.mean()) / images.std()
    fixed = {fw: suite.harness(fw).compute_trace(spec, weights, standardised.astype(np.float32), labels, settings)
             for fw in ("torch", "tf")}
    assert_close(fixed["tf"]["grad_input_ce"], fixed["torch"]["grad_input_ce"], quantity="grad_input_ce",
                  scale=float(np.abs(fixed["torch"]["grad_input_ce"]).max()))


def test_pitfall_relu_kink_flip(monkeypatch):
    """Not a port error: a ReLU input on its kink in torch (exactly 0.0: gradient path shut) and a few
    float32 rounding errors above it in Keras (path open), as rounding can leave it on a random batch.
    Built exactly (``tests/kinkcase.py``), so it happens on every CPU: forward rows agree (~1e-7), input
    gradients differ by several percent of their scale. The suite recognises it (only gradients fail, a
    ReLU input at margin 0 from its kink) and uses the next batch, where everything agrees."""
    from segparity.comparison.kinks import KINK_MARGIN
    from tests.kinkcase import planted

    case = planted(monkeypatch)
    on_kink = suite.run_case(case, max_kink_redraws=0)
    rows = {row.quantity: row for row in on_kink.rows}
    assert rows["logits_train"].passed and rows["logits_eval"].passed and rows["loss_ce"].passed
    assert not rows["grad_input_ce"].passed and rows["grad_input_ce"].max_abs > 1e-2
    weights = suite.harness(case.weights_from).random_weights(case.spec(), case.seed)
    margin = suite.kink_flip_suspected(on_kink.rows, case.spec(), weights, on_kink.inputs.images)
    assert margin is not None and margin < KINK_MARGIN

    redrawn = suite.run_case(case)
    assert redrawn.redrawn[0] == (case.seed, 0.0)  # the constructed batch set aside, at margin 0
    assert redrawn.inputs.data_seed > case.seed and all(row.passed for row in redrawn.rows)


@pytest.mark.slow  # about 12 s; .ci/run's slow step runs it (the README command's 300 s budget)
def test_kink_redraw_cannot_hide_a_port_error(monkeypatch):
    """A planted gradient error fails on every batch: the suite gives up after MAX_KINK_REDRAWS."""
    from segmentation_tf import harness

    real = harness.compute_trace

    def wrong_gradient(*args, **kwargs):
        trace = real(*args, **kwargs)
        trace["grad_input_ce"] = trace["grad_input_ce"] * np.float32(1.01)
        return trace

    monkeypatch.setattr(harness, "compute_trace", wrong_gradient)
    result = suite.run_case(suite.unet_cases(seed=0)[0])
    assert not {row.quantity: row for row in result.rows}["grad_input_ce"].passed
    assert len(result.redrawn) <= suite.MAX_KINK_REDRAWS


@pytest.mark.slow  # ResNet-50 passes in float32 and float64 on four batches (about 3 s; the suite's time budget)
def test_pitfall_deep_relu_kink_flips():
    """Why torchvision's ResNet models prove training parity in float64 (``segparity.parity.suite.TORCHVISION_CASES``):
    in ``deeplabv3_resnet50``'s training-mode pass, float32 rounding grows through 50 BatchNorm layers until ReLU
    inputs sit within one float32 error of zero on every batch, so torch's own float32 input gradient misses its
    float64 one by more than 100 x atol, and no redraw (``relu_kink_flip``) finds a batch clear of kinks. Torch
    alone shows it (no Keras involved); the report's float64 case of the same model agrees to ~1e-7."""
    from segmentation_torch.harness import kink_margin
    from segmentation_torch.registry import build_model
    from segmentation_torch.weights import from_canonical

    case = suite.Case("deeplabv3_resnet50", {}, batch=2, size=17, seed=0, weights_from="torch", num_classes=3)
    spec, settings = case.spec(), suite.default_settings(case)
    weights = suite.harness("torch").random_weights(spec, case.seed)
    for attempt in range(suite.MAX_KINK_REDRAWS + 1):
        images = suite.case_inputs(case, settings, data_seed=attempt).images
        assert kink_margin(spec, weights, images) < 1.0  # a ReLU input closer to 0 than one float32 error
    gradients = {}
    for dtype in (torch.float64, torch.float32):
        model = from_canonical(build_model(spec.name, **spec.options()), weights).to(dtype).train()
        x = torch.from_numpy(images).to(dtype).requires_grad_(True)
        model(x)["out"].square().mean().backward()
        gradients[dtype] = x.grad.double().numpy()
    exact = gradients[torch.float64]
    floor = np.abs(gradients[torch.float32] - exact).max() / np.abs(exact).max()
    assert floor > 100 * ATOL, floor
