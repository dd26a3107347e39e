"""Input checks shared by both frameworks, raised before any framework code runs.

Each framework passes plain facts (shape tuple, dtype name, layout string) and gets a clear
``ValueError``/``TypeError`` naming the argument, the model and what would work instead.
"""

from __future__ import annotations

import re

from segparity.networks.geometry import nearest_sizes

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def check_image_batch(shape: tuple, dtype: str, *, spec, layout: str, name: str = "x",
                      model_dtype: str | None = None) -> None:
    """Check an image batch for ``spec``'s network.

    ``shape`` may hold ``None`` for dimensions unknown while tracing; those are skipped.
    ``layout`` is ``"NCHW"`` (torch) or ``"NHWC"`` (Keras). ``model_dtype``: the weights' dtype when
    the framework does not cast inputs itself (torch); Keras casts floating inputs to the layer's
    compute dtype, so it passes ``None``.
    """
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(
            f"{name} must be a 4-D batch in {layout} layout {tuple(layout)}, got rank {len(shape)} "
            f"with shape {shape}; add a batch axis for a single image"
        )
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating-point tensor (float32), got dtype {dtype}; "
                        f"convert images with x.float() / tf.cast(x, 'float32') (and scale to [0, 1])")
    if model_dtype is not None and dtype != model_dtype:
        raise TypeError(f"{name} has dtype {dtype} but the model's weights are {model_dtype}; "
                        f"convert the input (x.to({model_dtype!r}) / x.float()) or the model")
    dims = dict(zip(layout, shape))
    channels = dims["C"]
    if channels is not None and channels != spec.in_channels:
        raise ValueError(
            f"{name} has {channels} channels (axis {layout.index('C')} of {layout} shape {shape}) but "
            f"{spec.describe()} was built with in_channels={spec.in_channels}"
        )
    for axis in ("H", "W"):
        size = dims[axis]
        if size is None:
            continue
        if spec.output_size(size) is None:
            label = "height" if axis == "H" else "width"
            nearest = nearest_sizes(size, spec.output_size)
            raise ValueError(
                f"{name} {label} {size} cannot go through {spec.describe()}: it needs {spec.size_rule()}; "
                f"nearest valid sizes: {', '.join(map(str, nearest))}"
            )


def check_logits_and_target(logits_shape: tuple, target_shape: tuple, *, layout: str, labels: bool,
                            input_name: str = "input", target_name: str = "target") -> None:
    """Check that logits ``(N, C, H, W)``/``(N, H, W, C)`` and target agree in shape.

    ``labels=True``: the target is an integer label map ``(N, H, W)``; otherwise it has the logits' shape.
    """
    logits_shape, target_shape = tuple(logits_shape), tuple(target_shape)
    if len(logits_shape) != 4:
        raise ValueError(f"{input_name} must be 4-D logits in {layout} layout, got shape {logits_shape}")
    if labels:
        c = layout.index("C")
        expected = logits_shape[:c] + logits_shape[c + 1:]
        what = "an integer label map (N, H, W)"
    else:
        expected = logits_shape
        what = f"a float target of the logits' shape {layout}"
    if len(target_shape) != len(expected) or any(
        a is not None and b is not None and a != b for a, b in zip(target_shape, expected)
    ):
        raise ValueError(f"{target_name} must be {what} matching {input_name} {logits_shape}: "
                         f"expected {expected}, got {target_shape}")


def label_range_error(name: str, bad_value: int, num_classes: int, ignore_index: int | None) -> ValueError:
    allowed = f"0..{num_classes - 1}" + ("" if ignore_index is None else f" or ignore_index={ignore_index}")
    return ValueError(f"{name} holds label {bad_value}, outside the valid range {allowed}")


def label_dtype_error(name: str, dtype: str) -> TypeError:
    return TypeError(f"{name} must hold integer class labels, got dtype {dtype}; "
                     f"round or cast a float mask to int64 first")


def nan_error(name: str) -> ValueError:
    return ValueError(f"{name} contains NaN or infinity")


def check_loss_target(input_shape: tuple, target_shape: tuple, *, mode: str, layout: str,
                      input_name: str = "input", target_name: str = "target") -> None:
    """Check a loss's ``input`` (4-D, ``layout``) against its ``target`` for ``mode`` (``segparity.reference.losses``).

    binary: one channel, target ``(N, 1, H, W)``/``(N, H, W, 1)`` or ``(N, H, W)``; multilabel: target of
    the input's shape; multiclass: integer label map ``(N, H, W)``. ``None`` dimensions are skipped.
    """
    input_shape, target_shape = tuple(input_shape), tuple(target_shape)
    if len(input_shape) != 4:
        raise ValueError(f"{input_name} must be 4-D in {layout} layout, got shape {input_shape}")
    channels = input_shape[layout.index("C")]
    if mode == "multiclass":
        check_logits_and_target(input_shape, target_shape, layout=layout, labels=True, input_name=input_name,
                                target_name=target_name)
        return
    if mode == "binary" and channels not in (1, None):
        raise ValueError(f"mode='binary' needs one channel in {input_name}, got {channels} (shape {input_shape}); "
                         f"use mode='multilabel' for independent channels or mode='multiclass' for softmax")
    if mode == "binary" and len(target_shape) == 3:
        target_shape = (target_shape[:1] + (1,) + target_shape[1:]) if layout == "NCHW" else target_shape + (1,)
    check_logits_and_target(input_shape, target_shape, layout=layout, labels=False, input_name=input_name,
                            target_name=target_name)


def check_target_dtype(name: str, dtype: str, *, labels: bool) -> None:
    """Integer dtypes where class labels are needed; integer, bool or floating dtypes otherwise."""
    integer = dtype.startswith("int") or dtype.startswith("uint")
    if labels and not integer:
        raise label_dtype_error(name, dtype)
    if not (integer or dtype == "bool" or dtype in FLOAT_DTYPES):
        raise TypeError(f"{name} must be a numeric 0/1 mask, got dtype {dtype}")


def target_value_error(name: str, value: float, *, hard: bool, ignore_index: int | None) -> ValueError:
    allowed = "0 or 1" if hard else "in [0, 1]"
    ignore = "" if ignore_index is None else f" (or ignore_index={ignore_index})"
    return ValueError(f"{name} holds {value:g}, but binary and multilabel targets must be {allowed}{ignore}")


def probability_error(name: str, value: float) -> ValueError:
    return ValueError(f"{name} holds {value:g}, not a probability in [0, 1]; pass from_logits=True for raw "
                      f"network outputs")


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str) -> str:
    """``text`` without terminal escape sequences (colours, bold) or other control characters; newlines
    and tabs are kept. Messages built from another library's error text go through this."""
    return _CONTROL.sub("", _ANSI_ESCAPE.sub("", str(text)))
