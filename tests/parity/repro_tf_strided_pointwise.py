"""Minimal reproducer of a TensorFlow bug: the weight gradient of a 1x1 convolution at stride 2.

Needs only TensorFlow and numpy (no segparity). For each shape ``HxCINxCOUT`` it computes
``d/dw sum(conv2d(x, w, strides=2, padding="VALID") * g)`` for ``x (1, H, H, CIN)``, ``w (1, 1, CIN, COUT)``
and a random ``g``, and prints the largest error against the exact float64 value (numpy), relative to
the gradient's largest magnitude. The exact value is a sum over the pixels the 1x1 kernel reads:
``dw[0, 0, i, o] = sum_{n, a, b} x[n, 2a, 2b, i] * g[n, a, b, o]``.

    python tests/parity/repro_tf_strided_pointwise.py 8x4x8 12x4x8 16x4x4
    ONEDNN_MAX_CPU_ISA=AVX2 python tests/parity/repro_tf_strided_pointwise.py 8x4x8 12x4x8
    python tests/parity/repro_tf_strided_pointwise.py --sliced 8x4x8 12x4x8   # the workaround
    python tests/parity/repro_tf_strided_pointwise.py --both 8x4x8 12x4x8     # the workaround, then the op

Measured with tensorflow 2.21.0 (oneDNN on, the default on x86-64): under ``ONEDNN_MAX_CPU_ISA=AVX2``
the gradient is wrong (8x4x8: 0.54 of its scale off; 46 of 350 small shapes wrong) on AMD and Intel;
under the default AVX-512 kernels the process aborts on some shapes (``free(): invalid size``,
``corrupted size vs. prev_size``, segmentation fault: 40 of 350 small shapes, 10x1x8 the smallest);
``TF_ENABLE_ONEDNN_OPTS=0`` is right everywhere. ``--sliced`` computes the same convolution as
``x[:, ::2, ::2, :]`` and a stride-1 1x1 convolution, which is right under every setting tried.
One line per shape, flushed, so that the lines before a crash are kept: ``strided|sliced HxCINxCOUT error``.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

STRIDE = 2


def weight_gradient_error(size: int, cin: int, cout: int, sliced: bool) -> float:
    """Largest |TensorFlow - exact| of the kernel gradient, over the exact gradient's largest magnitude."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, size, size, cin)).astype(np.float32)
    w = tf.Variable(rng.standard_normal((1, 1, cin, cout)).astype(np.float32))
    out = (size - 1) // STRIDE + 1
    g = rng.standard_normal((1, out, out, cout)).astype(np.float32)
    with tf.GradientTape() as tape:
        if sliced:
            y = tf.nn.conv2d(x[:, ::STRIDE, ::STRIDE, :], w, strides=1, padding="VALID")
        else:
            y = tf.nn.conv2d(x, w, strides=STRIDE, padding="VALID")
        loss = tf.reduce_sum(y * g)
    actual = tape.gradient(loss, w).numpy().astype(np.float64)
    exact = np.einsum("nabi,nabo->io", x[:, ::STRIDE, ::STRIDE, :].astype(np.float64), g.astype(np.float64))[None, None]
    return float(np.abs(actual - exact).max() / np.abs(exact).max())


def main(argv: list[str]) -> int:
    modes = ["sliced"] if "--sliced" in argv else ["sliced", "strided"] if "--both" in argv else ["strided"]
    shapes = [tuple(int(v) for v in arg.split("x")) for arg in argv if not arg.startswith("--")]
    print(f"# tensorflow {tf.__version__}, ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(default)')}, "
          f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(default)')}", flush=True)
    for mode in modes:
        for size, cin, cout in shapes:
            error = weight_gradient_error(size, cin, cout, sliced=mode == "sliced")
            print(f"{mode} {size}x{cin}x{cout} {error:.3e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
