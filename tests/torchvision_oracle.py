"""TEST-ONLY: torchvision as an oracle, and the seeded weights the checked-in expectations were made with.

segparity never imports torchvision at run time and nothing here downloads anything. torchvision 0.28.0
(the release for torch 2.13.0) is pure Python in its models, but its wheel's C++ operators do not load with
the CPU torch wheel here: ``import torchvision`` raises in ``torchvision/_meta_registrations.py``, whose
``register_fake("torchvision::nms")`` needs the missing C++ op. ``import_torchvision`` skips exactly those
fake-kernel and autograd registrations (detection ops; no model here uses them) by putting empty modules in
their place, then imports torchvision. It returns None where torchvision is not installed: the tests then
check against ``tests/data/torchvision_resnet.npz`` (``python -m tests.torchvision_oracle`` rewrites it).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np

EXPECTED = Path(__file__).resolve().parent / "data" / "torchvision_resnet.npz"
# configurations with stored outputs: (name, depth, replace_stride_with_dilation)
OUTPUT_CASES = (("resnet18", 18, (False, False, False)), ("resnet50_os8", 50, (False, True, True)))
KEY_CASES = (("resnet18", 18, (False, False, False)), ("resnet34", 34, (False, False, False)),
             ("resnet50", 50, (False, False, False)), ("resnet101", 101, (False, False, False)),
             ("resnet50_os8", 50, (False, True, True)))
NUM_CLASSES = 10
INPUT_SHAPE = (2, 3, 33, 29)  # odd sizes on purpose: torch's padding at stride 2, not Keras's "same"


def import_torchvision():
    """torchvision with its detection-op registrations skipped (module docstring), or None if not installed."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    try:
        import importlib.util

        if importlib.util.find_spec("torchvision") is None:
            return None
    except ValueError:
        return None
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    import torchvision

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


def model_input() -> np.ndarray:
    return np.random.default_rng(1).standard_normal(INPUT_SHAPE).astype(np.float32)


def torchvision_results(torchvision) -> dict[str, np.ndarray]:
    """What torchvision computes for every stored case: key names and shapes, eval and train outputs, and
    each BatchNorm's running mean and variance summed after the training forward."""
    import torch

    out = {}
    for name, depth, replace in KEY_CASES:
        model = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=NUM_CLASSES,
                                                              replace_stride_with_dilation=list(replace))
        state = model.state_dict()
        out[f"{name}/keys"] = np.array(list(state))
        out[f"{name}/shapes"] = np.array([",".join(map(str, t.shape)) for t in state.values()])
        if (name, depth, replace) not in OUTPUT_CASES:
            continue
        weights = seeded_state({k: tuple(t.shape) for k, t in state.items()})
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        x = torch.from_numpy(model_input())
        with torch.no_grad():
            out[f"{name}/eval"] = model.eval()(x).numpy()
            out[f"{name}/train"] = model.train()(x).numpy()
        stats = model.state_dict()
        out[f"{name}/bn_sums"] = np.array([float(stats[k].double().sum()) for k in stats
                                           if k.endswith(("running_mean", "running_var"))])
    return out


if __name__ == "__main__":
    tv = import_torchvision()
    if tv is None:
        raise SystemExit("torchvision is not installed: python -m pip install torchvision==0.28.0 --no-deps")
    results = torchvision_results(tv)
    EXPECTED.parent.mkdir(exist_ok=True)
    np.savez_compressed(EXPECTED, torchvision_version=np.array(tv.__version__), **results)
    print(f"{EXPECTED}: {EXPECTED.stat().st_size:,} bytes from torchvision {tv.__version__}")
