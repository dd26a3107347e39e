"""The parity suite behind ``segparity report``: which configurations, and how one is run.

Each case builds random weights in one framework (alternating torch / Keras initialisers), runs the
full trace (``segparity.comparison.trace``) in both frameworks through their twin ``harness`` modules, and compares
Keras against torch (torch is the reference for relative errors; either choice is arbitrary).
The framework packages are imported here by name, only when a case runs; no module of ``shared``
imports a framework at import time.
"""

from __future__ import annotations

import functools
import importlib
import itertools
from dataclasses import dataclass

from segparity.networks.geometry import center_crop_labels
from segparity.comparison.kinks import KINK_MARGIN
from segparity.reference.losses import report_inputs
from segparity.comparison.tolerance import ATOL, RTOL
from segparity.networks.specs import PRESETS, make_spec
from segparity.data.synthetic import standardize, synthetic_batch
from segparity.comparison.trace import LOSS_GRADIENTS, LOSS_ROWS, TraceSettings, compare_traces, float32_floors, summarise

FRAMEWORKS = ("torch", "tf")
HARNESS_MODULES = {"torch": "segmentation_torch.harness", "tf": "segmentation_tf.harness"}
DEVICE_MODULES = {"torch": "segmentation_torch.device", "tf": "segmentation_tf.device"}


@dataclass(frozen=True)
class Case:
    """One architecture configuration on one synthetic batch."""

    arch: str
    options: dict  # spec options other than in_channels and num_classes
    batch: int
    size: int
    seed: int
    weights_from: str  # "torch" or "tf": whose initialisers make the random weights
    in_channels: int = 3
    num_classes: int = 3
    tag: str = ""  # short name of the configuration in the report (default: derived from the options)
    dtype: str = "float32"  # "float64": both frameworks in double precision (pitfall deep_relu_kink_flips)

    def spec(self):
        return make_spec(self.arch, in_channels=self.in_channels, num_classes=self.num_classes, **self.options)

    def label(self) -> str:
        tag = self.tag or (unet_tag(self.options) if self.arch == "unet" else self.arch)
        precision = "" if self.dtype == "float32" else f" {self.dtype}"
        return f"{tag} {self.batch}x{self.in_channels}x{self.size}x{self.size} w:{self.weights_from}{precision}"


def unet_tag(options: dict) -> str:
    bn = "bn" if options.get("batch_norm", True) else "no-bn"
    return f"{options['padding']}/{options['upsample']}/{bn} d{options['depth']} c{options['base_channels']}"


@dataclass(frozen=True)
class Row:
    """One line of the report; ``to_json`` gives the documented JSON object."""

    arch: str
    config: str
    quantity: str
    max_abs: float
    max_rel: float
    rtol: float
    atol: float
    passed: bool
    detail: str = ""

    def to_json(self) -> dict:
        return {"arch": self.arch, "config": self.config, "quantity": self.quantity, "max_abs": self.max_abs,
                "max_rel": self.max_rel, "rtol": self.rtol, "atol": self.atol, "passed": self.passed}


def unet_cases(seed: int = 0) -> list[Case]:
    """U-Net in both paddings, both up-samplings, BN on and off.

    "same": depth 3, 2x3x32x32; "valid": depth 2, 2x3x60x60 (20x20 output). Sizes keep N*H*W of the
    largest feature map under 8000 (the float32 gradient floor, ``segparity.comparison.tolerance``).
    """
    cases = []
    for i, (padding, upsample, bn) in enumerate(itertools.product(("same", "valid"), ("transpose", "bilinear"),
                                                                  (True, False))):
        depth, size = (3, 32) if padding == "same" else (2, 60)
        options = dict(base_channels=8, depth=depth, padding=padding, upsample=upsample, batch_norm=bn)
        cases.append(Case("unet", options, batch=2, size=size, seed=seed + i, weights_from=FRAMEWORKS[i % 2]))
    cases.append(lesson_case("unet", seed + len(cases)))
    # the two-headed network (instance segmentation): logits and a 4-channel embedding from one head
    cases.append(Case("unet", dict(base_channels=8, depth=3, embedding_dim=4), batch=2, size=32, seed=seed + len(cases),
                      weights_from="tf", tag="same/transpose/bn d3 c8 +embedding 4"))
    return cases


def lesson_case(arch: str, seed: int) -> Case:
    """The lesson's network at full width (one logit, 3 input channels) on one 64x64 image.

    One image keeps the largest feature map at 4096 pixels; the bottleneck's BN still sees 16 values.
    """
    options = {k: v for k, v in PRESETS[arch]["lesson-segparity"].items() if k not in ("in_channels", "num_classes")}
    return Case(arch, options, batch=1, size=64, seed=seed, weights_from="torch", num_classes=1, tag="lesson preset")


def exercise_cases(arch: str, seed: int) -> list[Case]:
    """The lesson exercises' own networks (``preset="lesson-pytorch"`` / ``"lesson-tf"``, ``segparity.networks.lesson``)
    with their quirks, one 64x64 image each, as ``lesson_case``."""
    cases = []
    for i, preset in enumerate(("lesson-pytorch", "lesson-tf")):
        spec = make_spec(arch, preset=preset)
        options = {k: v for k, v in spec.options().items() if k not in ("in_channels", "num_classes")}
        cases.append(Case(spec.name, options, batch=1, size=64, seed=seed + i, weights_from=FRAMEWORKS[i % 2],
                          num_classes=1, tag=f"{preset} preset"))
    return cases


def segnet_cases(seed: int = 0) -> list[Case]:
    """SegNet with index unpooling (BN on and off) in the paper's shape at small widths, and the lesson's
    network. 2x3x32x32: the deepest BN sees 2*4*4 = 32 values per channel."""
    paper_like = dict(encoder=((8, 8), (16, 16), (16, 16, 16)), bottleneck=(), decoder=((16, 16, 16), (16, 8), (8,)),
                      upsample="unpool", head_kernel_size=3)
    cases = [Case("segnet", dict(paper_like, batch_norm=bn), batch=2, size=32, seed=seed + i,
                  weights_from=FRAMEWORKS[i % 2], tag=f"unpool/{'bn' if bn else 'no-bn'} 3 stages vgg-like c8")
             for i, bn in enumerate((True, False))]
    cases.append(lesson_case("segnet", seed + len(cases)))
    return cases


def fcn_cases(seed: int = 0) -> list[Case]:
    """FCN-32s/16s/8s on a narrow five-stage VGG (one conv per stage), padded (fc6 3x3 on the 1x1 pool5);
    FCN-8s with the paper's cropping (conv1_1 padded by 100, unpadded fc6), with and without BN."""
    narrow = dict(encoder=((8,), (8,), (16,), (16,), (16,)), fc_channels=32)
    configs = [(dict(variant=v, padding="same", fc_kernel_size=3, batch_norm=False), f"{v} same", 32, 2)
               for v in ("32s", "16s", "8s")]
    # Paper cropping on 1x3x24x24: conv1_1's padding makes the first maps 222x222, pool5 is 7x7; with
    # BN, fc6 is 3x3 so that its BN sees 25 values per channel, not one.
    configs += [(dict(variant="8s", padding="paper", fc_kernel_size=k, batch_norm=bn),
                 f"8s paper-crops fc6 {k}x{k} {'bn' if bn else 'no-bn'}", 24, 1) for k, bn in ((7, False), (3, True))]
    return [Case("fcn", dict(narrow, **options), batch=batch, size=size, seed=seed + i, weights_from=FRAMEWORKS[i % 2],
                 tag=f"{tag} c8 fc32") for i, (options, tag, size, batch) in enumerate(configs)]


def deeplab_cases(seed: int = 0) -> list[Case]:
    """DeepLabV3+ at output stride 16 and 8, narrow, on 8x3x32x32: the image-pooling BN sees one value
    per image and channel, and with fewer than 8 images its float32 gradients drift from float64 in
    both frameworks (``tests/parity/test_deeplab.py``)."""
    narrow = dict(stem_channels=8, stage_channels=(8, 16, 16, 32), blocks_per_stage=(1, 2, 1, 1), aspp_channels=16,
                  aspp_rates=(1, 2, 3), low_level_channels=8, decoder_channels=16)
    return [Case("deeplabv3plus", dict(narrow, output_stride=os), batch=8, size=32, seed=seed + i,
                 weights_from=FRAMEWORKS[i % 2], tag=f"os{os} rates 1,2,3 c8")
            for i, os in enumerate((16, 8))]


def spec_case(spec, seed: int = 0, weights_from: str = "torch") -> Case:
    """One case of any network (``segparity report`` with model flags or ``--weights``): a batch of 2 at the
    smallest square size >= 32 the network takes (torchvision's models: their ``TORCHVISION_CASES`` entry).
    ``weights_from``: "torch" or "tf" (random weights from that framework's initialisers) or the name of the
    weight file ``run_case`` is given."""
    options = {k: v for k, v in spec.options().items() if k not in ("in_channels", "num_classes")}
    if spec.name in TORCHVISION_CASES:  # its report case's batch, size and precision (float64 for ResNet)
        _, batch, size, dtype = TORCHVISION_CASES[spec.name]
        return Case(spec.name, options, batch=batch, size=size, seed=seed, weights_from=weights_from,
                    in_channels=spec.in_channels, num_classes=spec.num_classes, tag=spec.describe(), dtype=dtype)
    size = next((s for s in range(32, 2049) if spec.output_size(s) is not None), None)
    if size is None:
        raise ValueError(f"{spec.describe()} takes no input size between 32 and 2048 ({spec.size_rule()})")
    return Case(spec.name, options, batch=2, size=size, seed=seed, weights_from=weights_from,
                in_channels=spec.in_channels, num_classes=spec.num_classes, tag=spec.describe())


# torchvision's models: (options, batch, size, dtype). MobileNetV3's run in float32 (the DeepLabV3 one with its
# auxiliary head: the 0.5-weighted aux loss is in every loss, gradient and step). ResNet's run in float64 in both
# frameworks: in float32 their train-mode ReLU inputs sit within float32 error of zero on every batch, so
# gradients split at kinks although both frameworks are right (pitfall deep_relu_kink_flips); forward outputs
# are checked in float32 against torchvision's own (tests/test_torchvision_models.py).
TORCHVISION_CASES = {
    "lraspp_mobilenet_v3_large": (dict(), 2, 33, "float32"),
    "deeplabv3_mobilenet_v3_large": (dict(aux_loss=True), 4, 49, "float32"),
    "fcn_resnet50": (dict(aux_loss=True), 2, 17, "float64"),
    "fcn_resnet101": (dict(), 2, 17, "float64"),
    "deeplabv3_resnet50": (dict(aux_loss=True), 2, 17, "float64"),
    "deeplabv3_resnet101": (dict(), 2, 17, "float64"),
}


def torchvision_cases(arch: str, seed: int = 0) -> list[Case]:
    """One small case of torchvision's model ``arch`` (``TORCHVISION_CASES``), three classes; odd sizes, so
    stride-2 padding and the final resize are exercised."""
    options, batch, size, dtype = TORCHVISION_CASES[arch]
    tag = "torchvision +aux" if options.get("aux_loss") else "torchvision"
    return [Case(arch, options, batch=batch, size=size, seed=seed, weights_from=FRAMEWORKS[seed % 2], num_classes=3,
                 tag=tag, dtype=dtype)]


SUITES = {"deeplabv3plus": deeplab_cases, "fcn": fcn_cases, "segnet": segnet_cases, "unet": unet_cases,
          "lesson_segnet": functools.partial(exercise_cases, "segnet"), "lesson_unet": functools.partial(exercise_cases, "unet"),
          **{arch: functools.partial(torchvision_cases, arch) for arch in TORCHVISION_CASES}}


def harness(framework: str):
    return importlib.import_module(HARNESS_MODULES[framework])


def set_tf32(enabled: bool) -> str:
    """Set TF32 in both frameworks; return the state line for the report."""
    states = []
    for framework in FRAMEWORKS:
        device = importlib.import_module(DEVICE_MODULES[framework])
        device.set_tf32(enabled)
        states.append(device.tf32_state())
    return "; ".join(states)


MAX_KINK_REDRAWS = 3
FORWARD_QUANTITIES = ("logits_eval", "aux_eval", "logits_train", "loss_bce", "loss_ce", "bn_running", *LOSS_ROWS,
                      "embedding_eval", "loss_discriminative")
# Gradients a ReLU/max-pool kink of the network cannot move: the loss rows' inputs are the same array
# in both frameworks.
NOT_NETWORK_GRADIENTS = LOSS_GRADIENTS


@dataclass(frozen=True)
class Inputs:
    """The batch a case ran on: standardised images ``(N, C, H, W)``, labels cropped to the output."""

    images: object
    labels: object
    data_seed: int


def case_inputs(case: Case, settings: TraceSettings, data_seed: int | None = None) -> Inputs:
    """Standardised synthetic images and labels (cropped to the network's output size)."""
    spec = case.spec()
    seed = case.seed if data_seed is None else data_seed
    classes = max(case.num_classes, 2)  # a one-logit network segments one foreground class: labels 0/1
    images, labels = synthetic_batch(case.batch, case.in_channels, case.size, case.size, classes,
                                     seed, ignore_index=settings.ignore_index, ignore_fraction=0.05)
    out = spec.output_size(case.size)
    return Inputs(standardize(images), center_crop_labels(labels, out, out), seed)


def default_settings(case: Case) -> TraceSettings:
    """Class weights 1, 1.5, 2, ... (so the weighted mean is exercised; background and foreground for a
    one-logit network), ignore_index 255."""
    return TraceSettings(class_weights=tuple(1.0 + 0.5 * c for c in range(max(case.num_classes, 2))))


@dataclass(frozen=True)
class CaseResult:
    rows: list  # one Row per quantity, for the batch finally used
    per_tensor: dict  # quantity -> Comparison per tensor
    inputs: Inputs
    traces: dict  # framework -> trace
    redrawn: list  # (data seed, kink margin) of batches set aside as kink flips
    floors: dict  # quantity -> torch's float32 floor on the batch used (``segparity.comparison.trace.float32_floors``)
    weights: dict | None = None  # the canonical tensors both frameworks ran with


def kink_flip_suspected(rows: list, spec, weights: dict, images) -> float | None:
    """The kink margin when a failure looks like a ReLU/max-pool kink flip, else ``None``.

    A flip leaves every forward quantity equal and moves gradients, so it is suspected only when
    all failing rows are gradients or optimiser steps and some ReLU input or pool tie lies within
    ``KINK_MARGIN`` float32 errors of its kink (``segparity.comparison.kinks``; measured by the torch harness).
    """
    failing = [r.quantity for r in rows if not r.passed]
    if not failing or any(q in FORWARD_QUANTITIES or q in NOT_NETWORK_GRADIENTS for q in failing):
        return None
    margin = harness("torch").kink_margin(spec, weights, images)
    return margin if margin < KINK_MARGIN else None


def run_case(case: Case, settings: TraceSettings | None = None, device: str = "cpu",
             rtol: float = RTOL, atol: float = ATOL, data_seed: int | None = None,
             max_kink_redraws: int = MAX_KINK_REDRAWS, weights: dict | None = None) -> CaseResult:
    """Run ``case`` in both frameworks and compare Keras against torch.

    Gradients are not defined at a ReLU/max-pool kink, and float32 rounding can put torch and Keras
    on different sides of one (pitfall "relu_kink_flip"). When a failure looks like that
    (``kink_flip_suspected``) the case runs again on the next batch, at most ``max_kink_redraws``
    times; every batch set aside is reported. A real port error fails on every batch.

    Every row is compared at ``atol + 2 * floor``, the floor being how far torch's own float32 result
    is from its float64 one on the same batch (``segparity.comparison.trace.float32_floors``, pitfall "float32_floor"):
    Keras must be as close to torch as torch's float32 result is to the float64 one. The row's ``atol``
    is the one used; gradient and step floors above ``segparity.comparison.trace.FLOOR_LIMIT`` widen nothing.
    ``weights``: canonical tensors to use instead of random ones (``segparity report --weights``).
    """
    settings = settings or default_settings(case)
    spec = case.spec()
    if weights is None:  # random weights from case.weights_from's initialisers
        weights = harness(case.weights_from).random_weights(spec, case.seed)
    first = case.seed if data_seed is None else data_seed
    redrawn = []
    double = case.dtype == "float64"
    for attempt in range(max_kink_redraws + 1):
        inputs = case_inputs(case, settings, first + attempt)
        images = inputs.images.astype(case.dtype)
        traces = {fw: harness(fw).compute_trace(spec, weights, images, inputs.labels, settings, device, dtype=case.dtype)
                  for fw in FRAMEWORKS}
        losses = report_inputs(traces["torch"]["logits_train"], case.num_classes, settings.ignore_index)
        for framework in FRAMEWORKS:
            traces[framework].update(harness(framework).loss_trace(losses, inputs.labels, dtype=case.dtype))
        if double:  # the reference is exact to float64 rounding: no float32 floor widens a row
            floors = {}
        else:
            exact = harness("torch").compute_trace(spec, weights, images, inputs.labels, settings, device,
                                                   dtype="float64")
            exact.update(harness("torch").loss_trace(losses, inputs.labels, dtype="float64"))
            floors = float32_floors(traces["torch"], exact)
        per_tensor = compare_traces(traces["tf"], traces["torch"], rtol=rtol, atol=atol, floors=floors)
        rows = [Row(case.arch, case.label(), c.quantity, c.max_abs, c.max_rel, c.rtol, c.atol, c.passed, c.detail)
                for c in summarise(per_tensor)]
        redraw = attempt < max_kink_redraws and not double  # float64 margins are 1e9 times float32's
        margin = kink_flip_suspected(rows, spec, weights, inputs.images) if redraw else None
        if margin is None:
            break
        redrawn.append((inputs.data_seed, margin))
    return CaseResult(rows, per_tensor, inputs, traces, redrawn, floors, weights)


LOSS_ONLY = (*LOSS_ROWS, *LOSS_GRADIENTS)  # rows of the losses alone, on inputs both frameworks share


def stock_rows(case: Case, result: CaseResult, device: str = "cpu", rtol: float = RTOL, atol: float = ATOL) -> list[Row]:
    """How far each framework's ``layers="stock"`` flavour (``segparity.networks.layer_flavours``: ``nn.BatchNorm2d``,
    ``keras.layers.BatchNormalization``) is from torch's parity flavour, on ``result``'s weights and batch, every
    quantity compared as ``run_case`` compares it (the same tolerance and float32 floors). Informational rows: the
    stock flavour is what an idiomatic user writes, not held to the bar; ``config`` names the framework."""
    settings = default_settings(case)
    spec, inputs = case.spec(), result.inputs
    images = inputs.images.astype(case.dtype)
    losses = report_inputs(result.traces["torch"]["logits_train"], case.num_classes, settings.ignore_index)
    rows = []
    for framework in FRAMEWORKS:
        trace = harness(framework).compute_trace(spec, result.weights, images, inputs.labels, settings, device,
                                                 dtype=case.dtype, layers="stock")
        trace.update(harness(framework).loss_trace(losses, inputs.labels, dtype=case.dtype))
        compared = compare_traces(trace, result.traces["torch"], rtol=rtol, atol=atol, floors=result.floors)
        rows += [Row(case.arch, f"{case.label()} {framework} stock", c.quantity, c.max_abs, c.max_rel, c.rtol, c.atol,
                     c.passed, c.detail) for c in summarise(compared) if c.quantity not in LOSS_ONLY]
    return rows


def parameter_counts(case: Case) -> dict[str, int]:
    """Trainable parameter count of ``case``'s network, as each framework reports it."""
    return {framework: harness(framework).count_parameters(case.spec()) for framework in FRAMEWORKS}
