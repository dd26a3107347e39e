"""The PyTorch side of one measurement: eager, ``channels_last`` and ``torch.compile`` modes."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.cases import Case
from benchmarks.timing import Timing, time_call
from segmentation_torch.registry import build_model


def threads(n: int) -> str:
    torch.set_num_threads(n)
    torch.set_num_interop_threads(1)
    return f"torch intra-op {torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()}"


def gemm(n: int, warmup: int, repeats: int, device: str) -> Timing:
    """``(n, n) @ (n, n)`` float32: 2 n^3 floating-point operations."""
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    return time_call(lambda: a @ b, warmup=warmup, repeats=repeats, sync=_sync(device))


def _sync(device: str):
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def flops(case: Case, task: str) -> int:
    """FLOPs of one call, counted by ``torch.utils.flop_counter`` (convolutions and matmuls; a
    multiply-add is 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    model, x, y, loss_fn, _ = _setup(case, "cpu")
    with FlopCounterMode(display=False) as counter:
        if task == "forward":
            with torch.no_grad():
                model.eval()(x)
        else:
            loss_fn(model.train()(x), y).backward()
    return int(counter.get_total_flops())


def _setup(case: Case, device: str):
    torch.manual_seed(0)
    model = build_model(case.arch, **case.options).to(device)
    channels = model.spec.in_channels
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((case.batch, channels, case.size, case.size), dtype=np.float32)).to(device)
    classes = max(model.spec.num_classes, 2)
    y = torch.from_numpy(rng.integers(0, classes, (case.batch, case.size, case.size))).to(device)
    loss_fn = (torch.nn.BCEWithLogitsLoss() if model.spec.num_classes == 1 else torch.nn.CrossEntropyLoss())
    if model.spec.num_classes == 1:
        y = y[:, None].float()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    return model, x, y, loss_fn, optimizer


def measure(case: Case, task: str, mode: str, warmup: int, repeats: int, device: str) -> Timing:
    """Time one ``task`` ("forward": eval mode, no autograd; "train_step": forward, loss, backward,
    SGD update) of ``case`` in ``mode``."""
    model, x, y, loss_fn, optimizer = _setup(case, device)
    if mode == "channels_last":
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    elif mode == "compile":
        model = torch.compile(model)
    elif mode != "eager":
        raise ValueError(f"unknown torch mode {mode!r}")
    if task == "forward":
        model.eval()

        def step():
            with torch.inference_mode():
                return model(x)
    else:
        model.train()

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            return loss
    return time_call(step, warmup=warmup, repeats=repeats, sync=_sync(device))
