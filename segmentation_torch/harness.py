"""Parity trace, PyTorch side: run a model on numpy inputs and return numpy results.

Twin of ``segmentation_tf/harness.py``; the trace keys are documented in ``segparity.comparison.trace``.
Inputs and outputs are canonical: images ``(N, C, H, W)``, weights in ``segparity.weights.layout`` layout.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from segmentation_torch.device import resolve_device
from segmentation_torch.instance import DiscriminativeLoss
from segmentation_torch import losses as torch_losses
from segmentation_torch.optimizers import build_optimizer
from segmentation_torch.registry import build_model
from segmentation_torch.weights import from_canonical, tensor_refs, to_canonical
from segparity.comparison import kinks
from segparity.reference import losses as loss_reference
from segparity.weights.layout import permute_axes, randomize_for_parity
from segparity.networks.torchvision_segmentation import AUX_LOSS_WEIGHT
from segparity.comparison.trace import TraceSettings, instance_targets, network_losses, optimizer_steps, running_statistics

FRAMEWORK = "torch"


def versions() -> dict[str, str]:
    return {"torch": torch.__version__}


def random_weights(spec, seed: int) -> dict[str, np.ndarray]:
    """Canonical weights from torch's default initialisers (seeded), BN tensors and transposed-conv kernels randomised."""
    torch.manual_seed(seed)
    model = build_model(spec.name, **spec.options())
    return randomize_for_parity(to_canonical(model), spec, seed)


def _load(model: torch.nn.Module, weights: dict[str, np.ndarray], dtype: torch.dtype) -> None:
    """Canonical float32 ``weights`` into ``model``, then the model in ``dtype``."""
    from_canonical(model.float(), weights).to(dtype)


def _canonical(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """``to_canonical`` without its float32 cast, for float64 traces (copies: the model trains on)."""
    return {key: permute_axes(_numpy(t).copy(), axes, canon) for key, (t, axes, canon) in tensor_refs(model).items()}


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _logits(outputs) -> torch.Tensor:
    """The logits of a model's output: the output itself, the first of ``(logits, embedding)``, or ``"out"`` of
    torchvision's dict."""
    if isinstance(outputs, dict):
        return outputs["out"]
    return outputs[0] if isinstance(outputs, tuple) else outputs


def _network_loss(loss_fn, outputs, target: torch.Tensor) -> torch.Tensor:
    """``loss_fn`` of the logits, plus ``AUX_LOSS_WEIGHT`` times that of torchvision's ``"aux"`` output if any."""
    loss = loss_fn(_logits(outputs), target)
    if isinstance(outputs, dict) and "aux" in outputs:
        loss = loss + AUX_LOSS_WEIGHT * loss_fn(outputs["aux"], target)
    return loss


def compute_trace(spec, weights: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray,
                  settings: TraceSettings, device: str = "cpu", dtype: str = "float32", layers: str = "parity") -> dict:
    """Every quantity of ``segparity.comparison.trace`` for ``spec`` with ``weights`` on ``images (N, C, H, W)``.

    ``dtype="float64"`` runs everything in double precision (results are returned as float64). ``layers``: the
    model's flavour (``segparity.networks.layer_flavours``).
    """
    dev, dt = resolve_device(device), getattr(torch, dtype)
    model = build_model(spec.name, **spec.options(), layers=layers).to(dev)
    x = torch.from_numpy(np.ascontiguousarray(images)).to(dev, dt)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(dev)
    losses = {name: loss_reference.build(torch_losses, class_name, kwargs).to(dev)
              for name, (class_name, kwargs) in network_losses(spec.num_classes, settings).items()}
    trace: dict = {}

    _load(model, weights, dt)
    model.eval()
    with torch.no_grad():
        outputs = model(x)
    trace["logits_eval"] = _numpy(_logits(outputs))
    if isinstance(outputs, dict) and "aux" in outputs:
        trace["aux_eval"] = _numpy(outputs["aux"])
    if spec.embedding_dim:
        trace["embedding_eval"] = _numpy(outputs[1])

    model.train()
    for name, loss_fn in losses.items():
        _load(model, weights, dt)  # each training forward moves the BN running statistics
        refs = {k: v for k, v in tensor_refs(model).items() if v[0].requires_grad}
        x_in = x.clone().requires_grad_(True)
        outputs = model(x_in)
        logits = _logits(outputs)
        loss = _network_loss(loss_fn, outputs, y)
        grads = torch.autograd.grad(loss, [x_in] + [ref[0] for ref in refs.values()])
        trace["logits_train"] = _numpy(logits)
        trace[f"loss_{name}"] = _numpy(loss)
        trace[f"grad_input_{name}"] = _numpy(grads[0])
        trace[f"grad_weights_{name}"] = {
            key: permute_axes(_numpy(g), axes, canon) for (key, (_, axes, canon)), g in zip(refs.items(), grads[1:])
        }
    trace["bn_running"] = running_statistics(_canonical(model))

    if spec.embedding_dim:
        _load(model, weights, dt)
        refs = {k: v for k, v in tensor_refs(model).items() if v[0].requires_grad}
        instances = torch.from_numpy(instance_targets(labels, settings.ignore_index)).to(dev)
        loss = DiscriminativeLoss()(model(x)[1], instances)
        grads = torch.autograd.grad(loss, [ref[0] for ref in refs.values()])
        trace["loss_discriminative"] = _numpy(loss)
        trace["grad_weights_discriminative"] = {
            key: permute_axes(_numpy(g), axes, canon) for (key, (_, axes, canon)), g in zip(refs.items(), grads)
        }

    for opt_name, kwargs in optimizer_steps(settings):
        _load(model, weights, dt)
        optimizer = build_optimizer(model, opt_name, **kwargs)
        optimizer.zero_grad()
        outputs = model(x)
        loss = _network_loss(losses["bce"], outputs, y) + _network_loss(losses["ce"], outputs, y)
        loss.backward()
        optimizer.step()
        trace[f"weights_after_{opt_name}"] = _canonical(model)
    return trace


def loss_trace(losses: dict, target: np.ndarray, dtype: str = "float32") -> dict:
    """``loss_<name>`` and ``grad_logits_<name>`` (``segparity.comparison.trace``) of each ``name: (class_name, kwargs,
    input (N, C, H, W))`` (``segparity.reference.losses.report_inputs``) against ``target``, computed in ``dtype``."""
    trace = {}
    y = torch.from_numpy(np.asarray(target))
    for name, (class_name, kwargs, inputs) in losses.items():
        x = torch.from_numpy(np.asarray(inputs)).to(getattr(torch, dtype)).requires_grad_(True)
        loss = loss_reference.build(torch_losses, class_name, kwargs)(x, y)
        trace[f"loss_{name}"] = _numpy(loss)
        trace[f"grad_logits_{name}"] = _numpy(torch.autograd.grad(loss, [x])[0])
    return trace


def count_parameters(spec) -> int:
    """Trainable scalars of the torch model built from ``spec``."""
    model = build_model(spec.name, **spec.options())
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class _RecordKinkInputs(TorchFunctionMode):
    """Records the input of every ReLU (hardswish, hardsigmoid: shifted to their kinks) and max-pool the model
    calls, in call order (the model's code
    is untouched: a torch function mode sees each ``torch.nn.functional`` call)."""

    RELU = (F.relu, torch.relu)
    HARD = (F.hardswish, F.hardsigmoid)  # kinks at -3 and 3, recorded as the ReLU inputs x + 3 and x - 3
    POOL = (F.max_pool2d, F.max_pool2d_with_indices, torch.max_pool2d)

    def __init__(self):
        super().__init__()
        self.relu_inputs: list[np.ndarray] = []
        self.pool_inputs: list[np.ndarray] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.RELU:  # copies: an in-place ReLU (torchvision's) overwrites its input
            self.relu_inputs.append(_numpy(args[0]).copy())
        elif func in self.HARD:
            self.relu_inputs += [_numpy(args[0]) + 3.0, _numpy(args[0]) - 3.0]
        elif func in self.POOL:
            self.pool_inputs.append(_numpy(args[0]).copy())
        return func(*args, **(kwargs or {}))


def kink_margin(spec, weights: dict[str, np.ndarray], images: np.ndarray) -> float:
    """``segparity.comparison.kinks.kink_margin`` of a training-mode forward pass, run in float64 and float32."""
    records = {}
    for dtype in (torch.float64, torch.float32):
        model = from_canonical(build_model(spec.name, **spec.options()), weights).to(dtype).train()
        with torch.no_grad(), _RecordKinkInputs() as record:
            model(torch.from_numpy(np.asarray(images)).to(dtype))
        records[dtype] = record
    exact, rounded = records[torch.float64], records[torch.float32]
    return kinks.kink_margin(list(zip(exact.relu_inputs, rounded.relu_inputs)),
                             list(zip(exact.pool_inputs, rounded.pool_inputs)))
