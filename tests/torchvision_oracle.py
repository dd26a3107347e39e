"""TEST-ONLY: torchvision as an oracle, and the seeded weights the checked-in expectations were made with.

segparity never imports torchvision at run time and nothing here downloads anything. torchvision 0.28.0
(the release for torch 2.13.0) is pure Python in its models, but its wheel's C++ operators do not load with
the CPU torch wheel here: ``import torchvision`` raises in ``torchvision/_meta_registrations.py``, whose
``register_fake("torchvision::nms")`` needs the missing C++ op. ``import_torchvision`` skips exactly those
fake-kernel and autograd registrations (detection ops; no model here uses them) by putting empty modules in
their place, then imports torchvision. It returns None where torchvision is not installed: the tests then
check against ``tests/data/torchvision_backbones.npz`` (``python -m tests.torchvision_oracle`` rewrites it).
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXPECTED = Path(__file__).resolve().parent / "data" / "torchvision_backbones.npz"
EXPECTED_SEGMENTATION = Path(__file__).resolve().parent / "data" / "torchvision_segmentation.npz"
NUM_CLASSES = 10


@dataclass(frozen=True)
class Case:
    """One torchvision configuration: its builder and arguments, whether outputs are stored, and the input
    (odd sizes on purpose: torch's padding at stride 2, not Keras's "same")."""

    name: str
    builder: str  # a torchvision.models function
    kwargs: tuple  # (argument, value) pairs, torchvision's names
    outputs: bool = False  # store eval/train outputs and BatchNorm statistics (else keys and shapes only)
    input_shape: tuple = (2, 3, 33, 29)

    def arguments(self) -> dict:
        return {"weights": None, "num_classes": NUM_CLASSES, **dict(self.kwargs)}


CASES = (Case("resnet18", "resnet18", (), outputs=True),
         Case("resnet34", "resnet34", ()),
         Case("resnet50", "resnet50", ()),
         Case("resnet101", "resnet101", ()),
         Case("resnet50_os8", "resnet50", (("replace_stride_with_dilation", [False, True, True]),), outputs=True),
         # dropout 0: its random mask cannot be compared (segparity's twins leave it out)
         # 97 x 75: the last stage keeps 4 x 3 positions, so train-mode BatchNorm there is not ill-conditioned
         Case("mobilenet_v3_large", "mobilenet_v3_large", (("dropout", 0.0),), outputs=True, input_shape=(4, 3, 97, 75)),
         Case("mobilenet_v3_large_dilated", "mobilenet_v3_large", (("dilated", True), ("dropout", 0.0)), outputs=True,
              input_shape=(2, 3, 65, 57)),
         # 97 x 75: 3 x 2 after the five pools, so the adaptive 7 x 7 average pool's bins overlap (torch's rule)
         Case("vgg16", "vgg16", (("dropout", 0.0),), outputs=True, input_shape=(4, 3, 97, 75)),
         Case("vgg16_bn", "vgg16_bn", (("dropout", 0.0),), outputs=True, input_shape=(4, 3, 97, 75)))


@dataclass(frozen=True)
class SegmentationCase:
    """One of torchvision's segmentation builders (``torchvision.models.segmentation``), with stored outputs or
    only its keys. Two classes and a small odd input keep the stored file small."""

    name: str  # the builder, the same name in torchvision and in segparity
    aux_loss: bool
    outputs: bool = False
    input_shape: tuple = (2, 3, 19, 17)
    num_classes: int = 2

    def arguments(self) -> dict:
        out = {"weights": None, "weights_backbone": None, "num_classes": self.num_classes}
        return out if self.name.startswith("lraspp") else {**out, "aux_loss": self.aux_loss}


SEGMENTATION_CASES = (SegmentationCase("fcn_resnet50", True, outputs=True),
                      SegmentationCase("fcn_resnet101", False),
                      SegmentationCase("deeplabv3_resnet50", True, outputs=True),
                      SegmentationCase("deeplabv3_resnet101", True),
                      SegmentationCase("deeplabv3_mobilenet_v3_large", True, outputs=True),
                      SegmentationCase("lraspp_mobilenet_v3_large", False, outputs=True))


def import_torchvision():
    """torchvision with its detection-op registrations skipped (module docstring), or None if it is not
    installed (or does not import)."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    try:
        import torchvision
    except ImportError:
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules.pop(name, None)
        return None
    return torchvision


def seeded_state(shapes: dict[str, tuple], seed: int = 0) -> dict[str, np.ndarray]:
    """Weights for a ``state_dict`` of these key shapes, from a numpy seed, in key order: convs and linear
    layers scaled by 1/sqrt(fan-in), BatchNorm scale 0.5..1.5, shift and running mean -0.1..0.1, running
    variance 0.5..1.5 (non-trivial statistics, so eval-mode BatchNorm is tested)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = np.zeros(shape, np.int64)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif key.endswith(("running_mean", "bias")):
            state[key] = rng.uniform(-0.1, 0.1, shape).astype(np.float32)
        elif len(shape) == 1:  # a BatchNorm scale
            state[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            fan_in = int(np.prod(shape[1:]))
            state[key] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    return state


def _keys_and_shapes(name: str, state) -> dict[str, np.ndarray]:
    return {f"{name}/keys": np.array(list(state)),
            f"{name}/shapes": np.array([",".join(map(str, t.shape)) for t in state.values()])}


def seed_model(model):
    """Load ``seeded_state`` weights into a torch model (strictly); returns the model."""
    import torch

    weights = seeded_state({k: tuple(t.shape) for k, t in model.state_dict().items()})
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    return model


def _bn_sums(model) -> np.ndarray:
    """Each BatchNorm's running mean and variance, summed (float64), in state_dict order."""
    stats = model.state_dict()
    return np.array([float(stats[k].double().sum()) for k in stats if k.endswith(("running_mean", "running_var"))])


def model_input(case: Case) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(case.input_shape).astype(np.float32)


def torchvision_results(torchvision) -> dict[str, np.ndarray]:
    """What torchvision computes for every case: key names and shapes; for cases with outputs, eval and train
    outputs on seeded weights and each BatchNorm's running mean and variance summed after the training forward."""
    import torch

    out = {}
    for case in CASES:
        model = getattr(torchvision.models, case.builder)(**case.arguments())
        out.update(_keys_and_shapes(case.name, model.state_dict()))
        if not case.outputs:
            continue
        seed_model(model)
        x = torch.from_numpy(model_input(case))
        with torch.no_grad():
            out[f"{case.name}/eval"] = model.eval()(x).numpy()
            out[f"{case.name}/train"] = model.train()(x).numpy()
        out[f"{case.name}/bn_sums"] = _bn_sums(model)
    return out


def torchvision_segmentation_results(torchvision) -> dict[str, np.ndarray]:
    """The same for the segmentation builders: keys and shapes; eval and train outputs (``out``, ``aux``) and
    BatchNorm statistic sums for the cases with outputs."""
    import torch

    out = {}
    for case in SEGMENTATION_CASES:
        model = getattr(torchvision.models.segmentation, case.name)(**case.arguments())
        out.update(_keys_and_shapes(case.name, model.state_dict()))
        if not case.outputs:
            continue
        seed_model(model)
        x = torch.from_numpy(np.random.default_rng(1).standard_normal(case.input_shape).astype(np.float32))
        with torch.no_grad():
            for mode in ("eval", "train"):
                model.train(mode == "train")
                for module in model.modules():  # dropout off in train mode too: its random mask cannot be compared
                    if isinstance(module, torch.nn.Dropout):
                        module.eval()
                result = model(x)
                for key, value in result.items():
                    out[f"{case.name}/{mode}/{key}"] = value.numpy()
        out[f"{case.name}/bn_sums"] = _bn_sums(model)
    return out


if __name__ == "__main__":
    tv = import_torchvision()
    if tv is None:
        raise SystemExit("torchvision is not installed: python -m pip install torchvision==0.28.0 --no-deps")
    EXPECTED.parent.mkdir(exist_ok=True)
    for path, results in ((EXPECTED, torchvision_results(tv)),
                          (EXPECTED_SEGMENTATION, torchvision_segmentation_results(tv))):
        np.savez_compressed(path, torchvision_version=np.array(tv.__version__), **results)
        print(f"{path}: {path.stat().st_size:,} bytes from torchvision {tv.__version__}")
