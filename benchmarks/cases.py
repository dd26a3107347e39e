"""What is timed: one configuration per architecture (input size and batch stated), and the modes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segparity.networks.flops import step_flops
from segparity.networks.specs import make_spec


@dataclass(frozen=True)
class Case:
    arch: str
    options: dict[str, Any] = field(default_factory=dict)  # build_model options (in_channels, num_classes, ...)
    batch: int = 8
    size: int = 64  # square input, H = W

    def label(self) -> str:
        return f"{self.arch} {self.batch}x{self.options.get('in_channels', 3)}x{self.size}x{self.size}"

    def flops(self, task: str) -> int:
        """FLOPs of one ``task`` call, counted from the spec (``segparity.networks.flops``), the same for both frameworks."""
        return step_flops(make_spec(self.arch, **self.options), self.batch, self.size, self.size, task)


FULL = (
    Case("unet", dict(in_channels=3, num_classes=3, base_channels=32, depth=4), batch=8, size=128),
    Case("segnet", dict(preset="lesson-segparity"), batch=8, size=128),
    Case("fcn", dict(in_channels=3, num_classes=21, variant="8s", encoder=((32,), (64,), (128,), (128,), (128,)),
                     fc_channels=256), batch=8, size=128),
    Case("deeplabv3plus", dict(in_channels=3, num_classes=21), batch=8, size=128),
)
QUICK = (Case("unet", dict(in_channels=3, num_classes=3, base_channels=8, depth=3), batch=4, size=64),)

TASKS = ("forward", "train_step")
MODES = {
    "torch": ("eager", "channels_last", "compile"),
    "tf": ("eager", "function", "xla", "fit"),  # "fit": model.fit's compiled train step (train_on_batch)
}
QUICK_MODES = {"torch": ("eager", "channels_last"), "tf": ("function", "fit")}

# Mixed precision, reported in rows of its own and compared with the same precision's GEMM peak:
# on the CPU bf16 where the CPU has native bf16 instructions, on a GPU fp16 and bf16. Each framework's
# usual fast modes only (autocast in torch, a mixed dtype policy in Keras).
MIXED_PRECISIONS = {"cpu": ("bf16",), "cuda": ("fp16", "bf16")}
MIXED_MODES = {"torch": ("channels_last", "compile"), "tf": ("function", "fit")}
QUICK_MIXED_MODES = {"torch": ("channels_last",), "tf": ("function",)}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic
