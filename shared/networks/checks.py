"""Option checks used by every spec's ``__post_init__``: each error names the option."""

from __future__ import annotations

from typing import Any


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


def check_batch_norm(eps: Any, momentum: Any) -> None:
    if not (isinstance(eps, float) and eps > 0):
        raise ValueError(f"bn_eps must be a positive float, got {eps!r}")
    if not (isinstance(momentum, float) and 0.0 < momentum < 1.0):
        raise ValueError(f"bn_momentum must be a float in (0, 1) (torch convention), got {momentum!r}")


def int_tuple(name: str, value: Any, *, minimum: int = 1, allow_empty: bool = False) -> tuple[int, ...]:
    """``value`` (a list or tuple of ints, e.g. from JSON) as a tuple; errors name ``name``."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a tuple of ints, got {type(value).__name__} {value!r}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    for i, item in enumerate(value):
        check_int(f"{name}[{i}]", item, minimum)
    return tuple(value)


def stages_tuple(name: str, value: Any, *, allow_empty_stage: bool = False) -> tuple[tuple[int, ...], ...]:
    """A tuple of stages, each a tuple of channel counts (``((64, 64), (128, 128), ...)``)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{name} must be a non-empty tuple of stages, each a tuple of channel counts; got {value!r}")
    return tuple(int_tuple(f"{name}[{i}]", stage, allow_empty=allow_empty_stage) for i, stage in enumerate(value))


def freeze(spec: Any, name: str, value: Any) -> None:
    """Set a field of a frozen dataclass in ``__post_init__`` (lists from JSON become tuples)."""
    object.__setattr__(spec, name, value)
