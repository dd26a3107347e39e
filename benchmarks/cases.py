"""What is timed: one configuration per architecture (input size and batch stated), real-size networks, the scaling
sweeps, the modes, and the layer flavours (``segparity.networks.layer_flavours``)."""

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
    layers: str = "parity"  # build_model's layer flavour: "parity" or "stock"

    def label(self) -> str:
        """The network and input, ``arch NxCxHxW`` (the flavour is a column of its own)."""
        spec = make_spec(self.arch, **self.options)
        return f"{self.arch} {self.batch}x{spec.in_channels}x{self.size}x{self.size}"

    def flops(self, task: str) -> int:
        """FLOPs of one ``task`` call, counted from the spec (``segparity.networks.flops``), the same for both frameworks."""
        return step_flops(make_spec(self.arch, **self.options), self.batch, self.size, self.size, task)

    def pixels(self) -> int:
        """Pixels per batch, ``batch * size**2``: the scaling plots' axis."""
        return self.batch * self.size * self.size


FULL = (
    Case("unet", dict(in_channels=3, num_classes=3, base_channels=32, depth=4), batch=8, size=128),
    Case("segnet", dict(preset="lesson-segparity"), batch=8, size=128),
    Case("fcn", dict(in_channels=3, num_classes=21, variant="8s", encoder=((32,), (64,), (128,), (128,), (128,)),
                     fc_channels=256), batch=8, size=128),
    Case("deeplabv3plus", dict(in_channels=3, num_classes=21), batch=8, size=128),
)
QUICK = (Case("unet", dict(in_channels=3, num_classes=3, base_channels=8, depth=3), batch=4, size=64),)

# Networks of the size people train, fp32, each framework's best eager/graph mode (no torch.compile: minutes of
# compilation for ResNet-50), fewer repeats (seconds per call).
REAL_SIZE = (
    Case("deeplabv3_resnet50", dict(num_classes=21), batch=2, size=256),
    Case("lraspp_mobilenet_v3_large", dict(num_classes=21), batch=2, size=256),
    Case("unet", dict(preset="paper"), batch=1, size=572),  # Ronneberger et al.: 1x1x572x572 -> 388x388
)
REAL_SIZE_MODES = {"torch": ("channels_last",), "tf": ("function",)}
REAL_SIZE_WARMUP, REAL_SIZE_REPEATS = 2, 5

# ``--scaling``: the training step over input sizes (batch 1, or 2) and batch sizes (at one image size), fp32, parity
# layers, each framework's best mode, the run's threads and (the size sweep) 1 thread.
@dataclass(frozen=True)
class Sweep:
    networks: dict[str, dict[str, Any]]  # arch -> build_model options
    sizes: tuple[int, ...]  # the size sweep, at the network's size_batch
    batches: tuple[int, ...]  # the batch sweep, at batch_size x batch_size (batches below size_batch left out)
    batch_size: int
    size_batch: dict[str, int] = field(default_factory=dict)  # arch -> the size sweep's batch (default 1)

    def batch_of_size_sweep(self, arch: str) -> int:
        return self.size_batch.get(arch, 1)

    def cases(self) -> list[Case]:
        """Each point once: every size at the network's size-sweep batch, every batch at ``batch_size`` (the
        size-sweep batch at ``batch_size`` is in both)."""
        out = []
        for arch, options in self.networks.items():
            first = self.batch_of_size_sweep(arch)
            out += [Case(arch, options, batch=first, size=size) for size in self.sizes]
            out += [Case(arch, options, batch=batch, size=self.batch_size) for batch in self.batches if batch > first]
        return out


# torchvision's DeepLabV3 cannot train on one image: the ASPP's image-pooling branch normalises a 1x1 map, one value
# per channel, which torch's BatchNorm refuses in training mode (and segparity's Keras BatchNorm with it), so its
# size sweep runs at batch 2 and its batch sweep starts there.
SCALING = Sweep(networks={"unet": dict(in_channels=3, num_classes=2, base_channels=64, depth=4),
                          "deeplabv3_resnet50": dict(num_classes=21)},
                sizes=(64, 128, 256, 512), batches=(1, 2, 4, 8, 16), batch_size=128,  # 16 x 128^2 = 512^2 pixels
                size_batch={"deeplabv3_resnet50": 2})
QUICK_SCALING = Sweep(networks={"unet": dict(in_channels=3, num_classes=2, base_channels=8, depth=3)},
                      sizes=(32, 64), batches=(1, 2), batch_size=32)
SCALING_MODES = {"torch": "channels_last", "tf": "function"}
SCALING_WARMUP, SCALING_REPEATS = 1, 3


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

# The stock flavour (each framework's own BatchNorm) is timed in each framework's fast modes, next to the parity
# flavour in the same run: the difference is what segparity's exactness costs.
LAYER_FLAVOURS = ("parity", "stock")
STOCK_MODES = {"torch": ("channels_last", "compile"), "tf": ("function", "fit")}
QUICK_STOCK_MODES = {"torch": ("channels_last",), "tf": ("function",)}
QUICK_MIXED_MODES = {"torch": ("channels_last",), "tf": ("function",)}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic
