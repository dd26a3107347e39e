"""The PyTorch side of one measurement: eager, ``channels_last`` and ``torch.compile`` modes, in fp32
or under autocast (bf16, fp16)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from benchmarks.cases import Case
from benchmarks.timing import Timing, time_call
from segmentation_torch.registry import build_model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

_PINNED = False


def threads(n: int) -> str:
    """Pin intra-op threads to ``n`` and inter-op to 1, once per process (the setters refuse a second
    call after work has run); returns what is in force."""
    global _PINNED
    if not _PINNED:
        torch.set_num_threads(n)
        torch.set_num_interop_threads(1)
        _PINNED = True
    return f"torch intra-op {torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()}"


def check_device(device: str) -> str:
    """The device's name; a one-line error when ``device`` is "cuda" and torch sees no CUDA device."""
    if device == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise RuntimeError(f"--device cuda: torch {torch.__version__} sees no CUDA device")
    return torch.cuda.get_device_name()


def gemm(n: int, precision: str, warmup: int, repeats: int, device: str) -> Timing:
    """``(n, n) @ (n, n)`` in ``precision``: 2 n^3 floating-point operations."""
    a, b = (torch.randn(n, n, device=device, dtype=DTYPES[precision]) for _ in range(2))
    reset_device_peak(device)
    return time_call(lambda: a @ b, warmup=warmup, repeats=repeats, sync=_sync(device))


def _sync(device: str):
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def reset_device_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def device_peak_mib(device: str) -> float | None:
    """The CUDA caching allocator's peak since the last reset, MiB; None on the CPU."""
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


def _grouped_conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                                output_padding, groups, output_mask, out_shape, **kwargs) -> int:
    """torch's own ``convolution_backward`` formula with the weight gradient divided by ``groups``: torch 2.13 counts
    a grouped conv's weight gradient as an ungrouped one's, ``groups`` times too many (a depthwise 3x3 on 16
    channels: 294,912 FLOPs for 18,432; the change proposed in pytorch/pytorch#183405 divides it)."""
    import inspect

    from torch.utils.flop_counter import conv_backward_flop

    formula = inspect.unwrap(conv_backward_flop)  # on shapes, as custom_mapping passes them
    shapes = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding, groups)
    grad_input = formula(*shapes, [output_mask[0], False, False], out_shape)
    grad_weight = formula(*shapes, [False, output_mask[1], False], out_shape)
    return grad_input + grad_weight // groups


def profiler_flops(case: Case, task: str) -> dict[str, int]:
    """FLOPs of one call, counted by ``torch.utils.flop_counter`` on the built model (convolutions and
    matmuls; a multiply-add is 2): the check of ``Case.flops``, which counts from the spec. ``"torch"``: torch's
    count as it is; ``"grouped"``: the same with grouped convolutions' weight gradients divided by their groups
    (``_grouped_conv_backward_flop``), equal to torch's where no convolution is grouped."""
    from torch.utils.flop_counter import FlopCounterMode

    counts = {}
    for name, mapping in (("torch", None), ("grouped", {torch.ops.aten.convolution_backward: _grouped_conv_backward_flop})):
        model, x, y, loss_fn, _ = _setup(case, "cpu")
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            if task == "forward":
                with torch.no_grad():
                    model.eval()(x)
            else:
                loss_fn(_logits(model.train()(x)), y).backward()
        counts[name] = int(counter.get_total_flops())
    return counts



def _logits(output):
    """torchvision's segmentation models return a dict: their ``"out"`` is what is trained."""
    return output["out"] if isinstance(output, dict) else output


def _setup(case: Case, device: str):
    torch.manual_seed(0)
    model = build_model(case.arch, layers=case.layers, **case.options).to(device)
    channels = model.spec.in_channels
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((case.batch, channels, case.size, case.size), dtype=np.float32)).to(device)
    classes = max(model.spec.num_classes, 2)
    out = model.spec.output_size(case.size)  # the labels of what the network outputs (paper U-Net: 572 -> 388)
    y = torch.from_numpy(rng.integers(0, classes, (case.batch, out, out))).to(device)
    loss_fn = (torch.nn.BCEWithLogitsLoss() if model.spec.num_classes == 1 else torch.nn.CrossEntropyLoss())
    if model.spec.num_classes == 1:
        y = y[:, None].float()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    return model, x, y, loss_fn, optimizer


def measure(case: Case, task: str, mode: str, precision: str, warmup: int, repeats: int, device: str) -> Timing:
    """Time ``step_function(case, task, mode, precision, device)``, the device's peak memory reset first."""
    step = step_function(case, task, mode, precision, device)
    reset_device_peak(device)
    return time_call(step, warmup=warmup, repeats=repeats, sync=_sync(device))


def step_function(case: Case, task: str, mode: str, precision: str, device: str):
    """One ``task`` ("forward": eval mode, no autograd; "train_step": forward, loss, backward, SGD
    update) of ``case`` in ``mode``, as a callable. ``precision`` "bf16"/"fp16" runs forward and loss
    under ``torch.autocast`` (weights stay fp32; fp16 training scales the loss with a ``GradScaler``)."""
    model, x, y, loss_fn, optimizer = _setup(case, device)
    if mode == "channels_last":
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    elif mode == "compile":
        model = torch.compile(model)
    elif mode != "eager":
        raise ValueError(f"unknown torch mode {mode!r}")
    if precision == "fp32":
        autocast = contextlib.nullcontext
    else:
        def autocast():
            return torch.autocast(device_type=device, dtype=DTYPES[precision])
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")
    if task == "forward":
        model.eval()

        def step():
            with torch.inference_mode(), autocast():
                return model(x)
    else:
        model.train()

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(_logits(model(x)), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            return loss
    return step
