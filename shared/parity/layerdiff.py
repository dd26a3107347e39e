"""Where two implementations part: a layer-by-layer comparison of a torch model and its Keras twin.

Both models run on the same input; every layer named in a *name map* (torch attribute path -> Keras
layer path or name; for segparity's own networks the identity, since a torch attribute path is the
Keras layer's name) is compared twice:

- **isolated**: the Keras layer is fed the exact input torch's layer received (moved to channels-last),
  so its error is the layer's own;
- **end to end**: the Keras layer's output in the Keras model's own forward pass, where the errors of
  every earlier layer have accumulated.

A port bug shows as the first layer that fails *isolated*; end-to-end failures after it are its echo.
Per layer and column (reference: torch):

- ``max_abs``: ``max |keras - torch|``;
- ``max_rel``: ``max_abs / max |torch|``, the error relative to the reference's magnitude;
- ``cosine``: cosine similarity of the two outputs flattened (1 for two zero outputs);
- ``passed``: ``|keras - torch| <= atol + rtol * |torch|`` elementwise (``segparity.comparison.tolerance``'s criterion).

**float32 floor** (``reference="float64"``, the default): torch also runs a float64 copy of the model,
and each layer's ``floor`` is ``max |torch float32 - torch float64|``, the rounding torch itself
carries there. End-to-end rows and the output are judged at ``atol + 2 * floor`` (Keras may be as far
from torch as torch is from exact, in the other direction): in training mode the rounding of a deep
BatchNorm stack alone exceeds a bare 1e-5 (pitfall ``float32_floor``, docs/pitfalls.md). Isolated
rows use the same rule with the layer's own floor (``isolated_floor``): torch's float32 layer on torch's
input against a float64 copy of that layer on the same input, the rounding of that one layer (a 1x1 conv
summing 2048 channels of magnitude 10 rounds by 1e-5 by itself), measured for the rows over the bare
``atol`` only (a row within it needs no floor). The tolerance each row used is printed.

Layouts: everything is compared in torch's layout (channels-first, ``(N, C, H, W)``). A Keras array
of rank >= 3 is taken as channels-last (``(N, H, W, C)``, ``(N, L, C)``) and its last axis moved to
position 1 (``to_torch``), and torch's arrays are moved the other way before a Keras layer gets them
(``to_keras``), except for the Keras layers listed in ``channels_first`` (a port that permutes to
channels-first before a flatten, say), whose arrays already have torch's axes. Rank <= 2 arrays are
never moved. Inputs with integer entries (max-unpooling indices) are framework-specific and not fed
across: such layers get only the end-to-end column.

This module imports neither framework: the probes are loaded by name (``segmentation_{torch,tf}.probe``).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from segparity.comparison.records import LayerCall
from segparity.parity.layerplot import plot_layer_report
from segparity.parity.machine import environment
from segparity.comparison.tolerance import ATOL, RTOL


@dataclass(frozen=True)
class Agreement:
    """How close one Keras output is to torch's (the module docstring defines each number)."""

    max_abs: float
    max_rel: float
    cosine: float
    passed: bool
    atol: float  # the absolute tolerance it was judged at
    note: str = ""


@dataclass(frozen=True)
class LayerRow:
    """One layer call: where it is in each model and how its output agrees."""

    torch_path: str
    keras_path: str
    torch_kind: str
    keras_kind: str
    shape: tuple
    isolated: Agreement | None
    end_to_end: Agreement | None
    floor: float | None  # max |torch float32 - torch float64| of this output (None: no float64 run)
    note: str = ""
    pitfalls: tuple[str, ...] = ()  # named pitfalls (docs/pitfalls.md) the probes see this layer exposed to
    isolated_floor: float | None = None  # max |torch float32 layer - float64 copy of it| on torch's input; None where
    # not measured: the row passed at the bare atol, its inputs are not float arrays, or reference=None


@dataclass
class LayerReport:
    """Every compared layer call in torch's execution order, the final outputs, and the settings."""

    rows: list[LayerRow]
    output: Agreement
    rtol: float
    atol: float
    training: bool
    output_floor: float | None = None
    environment: dict = field(default_factory=dict)
    unmapped: tuple[str, ...] = ()  # layers with weights that the name map leaves out ("torch 'fc'", "Keras 'dense'")

    @property
    def passed(self) -> bool:
        return self.output.passed and self.first_failure("isolated") is None and self.first_failure("end_to_end") is None

    def first_failure(self, column: str) -> LayerRow | None:
        """The first row whose ``column`` ("isolated" or "end_to_end") is over tolerance, or None."""
        for row in self.rows:
            agreement = getattr(row, column)
            if agreement is not None and not agreement.passed:
                return row
        return None

    def first_port_error(self) -> LayerRow | None:
        """The first row over tolerance isolated and not agreeing end to end either: where to start looking. (A row
        over tolerance only isolated agrees inside its own model; see ``diagnosis``.)"""
        for row in self.rows:
            if row.isolated is not None and not row.isolated.passed and (row.end_to_end is None
                                                                          or not row.end_to_end.passed):
                return row
        return None

    def verdict(self) -> str:
        """One line: which layer first exceeds the tolerance, isolated and end to end."""
        parts = []
        for column, label in (("isolated", "isolated"), ("end_to_end", "end to end")):
            row = self.first_failure(column)
            if row is None:
                parts.append(f"{label}: none")
            else:
                agreement = getattr(row, column)
                parts.append(f"{label}: {_name(row)} (max_abs {agreement.max_abs:.2e}, max_rel {agreement.max_rel:.2e})")
        unmapped = f"; not compared (layers with weights outside the name map): {', '.join(self.unmapped)}" \
            if self.unmapped else ""
        return (f"first layer over tolerance (atol {self.atol:g}, rtol {self.rtol:g}): " + "; ".join(parts)
                + f"; output max_abs {self.output.max_abs:.2e} ({'pass' if self.output.passed else 'FAIL'})"
                + unmapped)

    def diagnosis(self) -> str:
        """What the rows say, in one sentence: a port error, rounding, or agreement.

        A layer that fails isolated but agrees end to end is not where a port goes wrong: its Keras model hands it
        an input prepared by a layer outside the name map (``keras.applications`` pads in a separate
        ``ZeroPadding2D`` before a valid conv). Such rows are named after the diagnosis, not as its start."""
        isolated = self.first_port_error()
        alone = [row for row in self.rows if row.isolated is not None and not row.isolated.passed
                 and row.end_to_end is not None and row.end_to_end.passed]
        reshaped = [_name(row) for row in alone if not np.isfinite(row.isolated.max_abs)]
        rounded = [_name(row) for row in alone if np.isfinite(row.isolated.max_abs)]
        note = ""
        if reshaped:
            note += (f"; {_listed(reshaped)} gives another shape only isolated and agrees end to end: its Keras model "
                     "prepares that input in a layer outside the name map (a separate ZeroPadding2D, as "
                     "keras.applications has), not a port error")
        if rounded:
            note += (f"; {_listed(rounded)} is over tolerance only isolated (max_rel "
                     f"{max(row.isolated.max_rel for row in alone if np.isfinite(row.isolated.max_abs)):.1e}) and "
                     "agrees end to end: Keras rounds that layer differently from torch by more than torch's own "
                     "float32 floor there (compare the iso atol column)")
        return self._diagnosis(isolated) + note

    def _diagnosis(self, isolated: LayerRow | None) -> str:
        if isolated is not None:
            return (f"port error: {_name(isolated)} gives a different output on torch's own input (isolated); "
                    f"start there{_pitfall_hint(isolated)}")
        end_to_end = self.first_failure("end_to_end")
        if end_to_end is not None and _pitfall_hint(end_to_end):
            return f"{_name(end_to_end)} is the first layer over tolerance end to end{_pitfall_hint(end_to_end)}"
        if (end_to_end is not None or not self.output.passed) and self.unmapped:
            return (f"no compared layer fails on torch's own input (isolated); layers with weights that the name "
                    f"map leaves out were not compared: {', '.join(self.unmapped)}; map them to find the one that "
                    "differs")
        if end_to_end is not None or not self.output.passed:
            return ("no compared layer fails on torch's own input (isolated); the end-to-end difference comes from "
                    "an operation between the compared layers (one outside the name map), accumulated float32 "
                    "rounding (compare the torch f32 floor column) or a value crossing a ReLU/max-pool kink "
                    "(docs/pitfalls.md, relu_kink_flip)")
        return "torch and Keras agree at every compared layer, isolated and end to end"

    def format(self) -> str:
        """The report as a fixed-width (Markdown-compatible) table plus the verdict line."""
        header = ("#", "layer", "kind", "shape", "iso max_abs", "iso max_rel", "iso cosine", "iso atol",
                  "e2e max_abs", "e2e max_rel", "e2e cosine", "torch f32 floor", "e2e atol", "verdict")
        cells = [header]
        for i, row in enumerate(self.rows, 1):
            kind = row.torch_kind if row.torch_kind == row.keras_kind else f"{row.torch_kind} / {row.keras_kind}"
            cells.append((str(i), _name(row), kind, "x".join(str(s) for s in row.shape),
                          *_cells(row.isolated), _number(None if row.isolated is None else row.isolated.atol),
                          *_cells(row.end_to_end), _number(row.floor),
                          _number(None if row.end_to_end is None else row.end_to_end.atol), _row_verdict(row)))
        cells.append(("", "(output)", "", "", "", "", "", "", *_cells(self.output), _number(self.output_floor),
                      _number(self.output.atol), _mark(self.output)))
        widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
        lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        notes = [f"#{i}: {row.note}" for i, row in enumerate(self.rows, 1) if row.note]
        return "\n".join(lines + notes + [self.verdict(), self.diagnosis()])

    def plot(self, path, title: str = ""):
        """Draw the report as a PNG at ``path`` (``segparity.parity.layerplot``): max relative error per layer in
        forward order, isolated and end to end, log scale, ``rtol`` as a line, the first layer over tolerance marked."""
        return plot_layer_report(self, path, title)

    def to_json(self) -> dict:
        """Everything in the report as plain JSON types."""
        first = {column: (None if self.first_failure(column) is None else _name(self.first_failure(column)))
                 for column in ("isolated", "end_to_end")}
        return {"environment": self.environment, "rtol": self.rtol, "atol": self.atol, "training": self.training,
                "passed": self.passed, "first_failure": first, "output": asdict(self.output),
                "output_floor": self.output_floor, "unmapped": list(self.unmapped),
                "layers": [{**asdict(row), "shape": list(row.shape)} for row in self.rows]}


def _pitfall_hint(row: LayerRow) -> str:
    """``"; it is exposed to pitfall NAME ..."`` when the probes named one for the row's layer, else ""."""
    return f"; it is exposed to pitfall {', '.join(row.pitfalls)} (docs/pitfalls.md)" if row.pitfalls else ""


def _name(row: LayerRow) -> str:
    return row.torch_path if row.torch_path == row.keras_path else f"{row.torch_path} -> {row.keras_path}"


def _cells(agreement: Agreement | None) -> tuple[str, str, str]:
    if agreement is None:
        return ("-", "-", "-")
    return (f"{agreement.max_abs:.2e}", f"{agreement.max_rel:.2e}", f"{agreement.cosine:.7f}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def _mark(agreement: Agreement | None) -> str:
    return "-" if agreement is None else ("pass" if agreement.passed else "FAIL")


def _row_verdict(row: LayerRow) -> str:
    return f"{_mark(row.isolated)} / {_mark(row.end_to_end)}"


def _arrays(value) -> list[np.ndarray]:
    if isinstance(value, dict):  # by key, so both frameworks' dicts line up whatever their order
        return [a for key in sorted(value) for a in _arrays(value[key])]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _arrays(v)]
    return [np.asarray(value)]


def agreement(actual, expected, *, rtol: float = RTOL, atol: float = ATOL) -> Agreement:
    """Compare ``actual`` (Keras) with ``expected`` (torch); for a tuple output, the worst element."""
    actual_arrays, expected_arrays = _arrays(actual), _arrays(expected)
    if len(actual_arrays) != len(expected_arrays):
        return Agreement(float("inf"), float("inf"), 0.0, False, atol,
                         f"{len(actual_arrays)} outputs vs torch's {len(expected_arrays)}")
    worst = Agreement(0.0, 0.0, 1.0, True, atol)
    for a, b in zip(actual_arrays, expected_arrays):
        if a.shape != b.shape:
            return Agreement(float("inf"), float("inf"), 0.0, False, atol, f"shape {a.shape} vs torch's {b.shape}")
        a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        if not (np.all(np.isfinite(a64)) and np.all(np.isfinite(b64))):
            return Agreement(float("nan"), float("nan"), float("nan"), False, atol, "NaN or infinity present")
        err = np.abs(a64 - b64)
        max_abs = float(err.max()) if err.size else 0.0
        max_rel = max_abs / max(float(np.abs(b64).max()) if b64.size else 0.0, atol)
        norms = float(np.linalg.norm(a64) * np.linalg.norm(b64))
        cosine = float(a64 @ b64 / norms) if norms > 0 else (1.0 if max_abs == 0 else 0.0)
        passed = bool(np.all(err <= atol + rtol * np.abs(b64)))
        worst = Agreement(max(worst.max_abs, max_abs), max(worst.max_rel, max_rel), min(worst.cosine, cosine),
                          worst.passed and passed, atol)
    return worst


# Warnings raised in these packages while segparity runs a user's models are segparity's business, not the
# user's test run's: a Keras deprecation inside a probe is dropped, a warning from the user's own code is passed on.
LIBRARY_PACKAGES = ("shared", "segmentation_torch", "segmentation_tf", "keras", "tensorflow", "tf_keras", "numpy",
                    "torch", "h5py", "absl", "google")


def _library_folders() -> tuple[str, ...]:
    folders = []
    for name in LIBRARY_PACKAGES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            folders.append(os.path.dirname(os.path.abspath(module.__file__)) + os.sep)
    return tuple(folders)


def library_warnings_dropped(function):
    """Run ``function`` with warnings from ``LIBRARY_PACKAGES`` dropped; every other warning (the user's
    own code, called from inside) is re-issued as it was, under the caller's filters."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        __tracebackhide__ = True  # pytest shows the caller's line, not this wrapper's source
        catcher = warnings.catch_warnings(record=True)
        caught = catcher.__enter__()
        warnings.simplefilter("always")
        try:
            return function(*args, **kwargs)
        finally:
            catcher.__exit__(None, None, None)  # the caller's filters again, for what is passed on
            folders = _library_folders()
            for w in caught:
                if not os.path.abspath(w.filename).startswith(folders):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)

    return wrapper


def probes():
    """The torch and Keras probe modules (imported here, by name)."""
    return importlib.import_module("segmentation_torch.probe"), importlib.import_module("segmentation_tf.probe")


def default_name_map(torch_model, keras_model) -> dict[str, str]:
    """Every torch submodule path that names a Keras layer too (the identity map of segparity's own models)."""
    torch_probe, tf_probe = probes()
    out = {}
    for path in torch_probe.layer_paths(torch_model):
        try:
            tf_probe.find_layer(keras_model, path)
        except KeyError:
            continue
        out[path] = path
    return out


def check_arguments(torch_fn, tf_fn, inputs, rtol, atol) -> list[np.ndarray]:
    """The inputs as a list of arrays, after checking the arguments of ``assert_parity`` / ``diff_models``;
    errors name the argument."""
    for name, fn in (("torch_fn", torch_fn), ("tf_fn", tf_fn)):
        if not callable(fn):
            raise TypeError(f"{name} must be a model or a callable, got {type(fn).__name__}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    arrays = [np.asarray(x) for x in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
    if not arrays or any(a.dtype == object or a.size == 0 for a in arrays):
        raise TypeError("inputs must be a non-empty numpy array in torch's layout (N, C, H, W), or a list of them; "
                        f"got {type(inputs).__name__}")
    return arrays


def check_name_map(torch_model, keras_model, name_map) -> dict[str, str]:
    """``name_map`` as a dict after checking it: a mapping of torch paths to Keras layer names, every one of
    which exists in its model, no Keras layer named twice. Errors name the argument or the layer."""
    if not isinstance(name_map, Mapping):
        raise TypeError(f"name_map must be a dict {{torch attribute path: Keras layer name}}, got "
                        f"{type(name_map).__name__}; default_name_map(torch_model, keras_model) gives the layers "
                        "whose names agree")
    name_map = dict(name_map)
    bad = [(k, v) for k, v in name_map.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"name_map maps layer names (str) to layer names (str); got {bad[0][0]!r}: {bad[0][1]!r}")
    values = list(name_map.values())
    repeated = sorted({k for k in values if values.count(k) > 1})
    if repeated:
        raise ValueError(f"name_map names the Keras layer(s) {', '.join(map(repr, repeated))} for more than one torch layer")
    torch_probe, tf_probe = probes()
    for torch_path, keras_path in name_map.items():
        torch_probe.find_layer(torch_model, torch_path)  # a KeyError naming the path, before anything runs
        tf_probe.find_layer(keras_model, keras_path)
    return name_map


def unmapped_layers(torch_model, keras_model, name_map: dict[str, str]) -> list[tuple[str, str]]:
    """``(framework, path)`` of every layer with weights of its own that ``name_map`` leaves out, torch's
    ("torch", attribute path) then Keras's ("Keras", layer name)."""
    torch_probe, tf_probe = probes()
    torch_mapped = {id(torch_probe.find_layer(torch_model, p)) for p in name_map}
    keras_mapped = {id(tf_probe.find_layer(keras_model, p)) for p in name_map.values()}
    return ([("torch", p) for p in torch_probe.weighted_paths(torch_model)
             if id(torch_probe.find_layer(torch_model, p)) not in torch_mapped]
            + [("Keras", p) for p in tf_probe.weighted_paths(keras_model)
               if id(tf_probe.find_layer(keras_model, p)) not in keras_mapped])


def _named(layers: list[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(f"{framework} {path!r}" for framework, path in layers)


def _move(value, source: int, target: int):
    if isinstance(value, dict):  # torchvision's outputs ("out", "aux"), LR-ASPP's head input ("low", "high")
        return {key: _move(v, source, target) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_move(v, source, target) for v in value]
    if isinstance(value, np.ndarray) and value.ndim >= 3:
        return np.ascontiguousarray(np.moveaxis(value, source, target))
    return value


def to_keras(value, channels_first: bool = False):
    """Arrays in torch's layout (or lists of them) in Keras's: axis 1 moved last for rank >= 3."""
    return value if channels_first else _move(value, 1, -1)


def to_torch(value, channels_first: bool = False):
    """Arrays in Keras's layout (or lists of them) in torch's: the last axis moved to 1 for rank >= 3."""
    return value if channels_first else _move(value, -1, 1)


def _has_integers(value) -> bool:
    return any(np.issubdtype(a.dtype, np.integer) or a.dtype == bool for a in _arrays(value)
               if isinstance(a, np.ndarray) and a.ndim > 0)


def _floor(float32_output, float64_output) -> float:
    """max |torch float32 - torch float64| over every array of an output."""
    pairs = zip(_arrays(float32_output), _arrays(float64_output))
    return max((float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0)) for a, b in pairs),
               default=0.0)


def _listed(names: list[str]) -> str:
    return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")


def _isolated_floor(torch_probe, torch_model, call: LayerCall, training: bool, reference: str) -> float | None:
    """How far torch's float32 layer output is from a ``reference`` (float64) copy of that layer run on the same
    recorded input; None where the inputs are not all floating arrays or the float64 copy cannot run on them (the
    layer then keeps the bare atol: a floor that cannot be measured is not assumed)."""
    if not call.args or not all(isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating) for a in call.args):
        return None
    try:
        exact, _ = torch_probe.record(torch_probe.find_layer(torch_model, call.path), list(call.args), [], training,
                                      dtype=reference)
    except Exception:  # e.g. a layer that needs more than its positional arguments: no floor, the bare atol
        return None
    return _floor(call.output, exact)


@library_warnings_dropped
def diff_models(torch_model, keras_model, inputs, *, name_map: dict[str, str] | None = None,
                rtol: float = RTOL, atol: float = ATOL, training: bool = False,
                reference: str | None = "float64", channels_first: tuple[str, ...] = ()) -> LayerReport:
    """Run ``torch_model`` and ``keras_model`` on the same canonical ``inputs`` (an array or a list of
    arrays, channels-first) and compare every layer of ``name_map`` isolated and end to end.

    ``name_map`` maps torch attribute paths to Keras layer paths or names; ``None`` means every torch
    path that is also a Keras layer path or name. A torch layer called k times is matched with the
    k-th call of its Keras twin. ``reference="float64"`` measures torch's own float32 floor per layer
    (module docstring); ``None`` judges every row at the bare ``atol``. ``channels_first``: Keras
    layer names whose arrays already have torch's axes (module docstring).
    """
    if reference not in ("float64", None):
        raise ValueError(f"reference must be 'float64' or None, got {reference!r}")
    torch_probe, tf_probe = probes()
    inputs = check_arguments(torch_model, keras_model, inputs, rtol, atol)
    name_map = check_name_map(torch_model, keras_model,
                              default_name_map(torch_model, keras_model) if name_map is None else name_map)
    torch_out, torch_calls = torch_probe.record(torch_model, inputs, list(name_map), training)
    keras_out, keras_calls = tf_probe.record(keras_model, to_keras(inputs), list(name_map.values()), training)
    keras_out = to_torch(keras_out)
    floors: list[float | None] = [None] * len(torch_calls)
    output_floor = None
    if reference is not None:
        exact_out, exact_calls = torch_probe.record(torch_model, inputs, list(name_map), training, dtype=reference)
        floors = [_floor(a.output, b.output) for a, b in zip(torch_calls, exact_calls)]
        output_floor = _floor(torch_out, exact_out)
    keras_by_path: dict[str, list[LayerCall]] = {}
    for call in keras_calls:
        keras_by_path.setdefault(call.path, []).append(call)
    seen: dict[str, int] = {}
    rows = []
    for call, floor in zip(torch_calls, floors):
        keras_path = name_map[call.path]
        k = seen[call.path] = seen.get(call.path, 0) + 1
        twins = keras_by_path.get(keras_path, [])
        note = ""
        end_to_end = None
        isolated_floor = None
        first = keras_path in channels_first
        if k <= len(twins):
            end_to_end = agreement(to_torch(twins[k - 1].output, first), call.output, rtol=rtol,
                                   atol=atol + 2 * (floor or 0.0))
        else:
            note = f"the Keras layer {keras_path!r} was called {len(twins)} time(s), torch's {call.path!r} more"
        if _has_integers(call.args):
            isolated = None
            note = note or "integer input (e.g. pooling indices) is framework-specific: end to end only"
        else:
            try:
                output = to_torch(tf_probe.run_layer(keras_model, keras_path, to_keras(call.args, first), training),
                                  first)
                isolated = agreement(output, call.output, rtol=rtol, atol=atol)
                if not isolated.passed and np.isfinite(isolated.max_abs) and reference is not None:
                    # over the bare atol: measure this layer's own float32 floor (a row within it needs none)
                    isolated_floor = _isolated_floor(torch_probe, torch_model, call, training, reference)
                    isolated = agreement(output, call.output, rtol=rtol, atol=atol + 2 * (isolated_floor or 0.0))
            except Exception as exc:  # the Keras layer cannot take torch's input: a finding, not a crash
                isolated = Agreement(float("inf"), float("inf"), 0.0, False, atol)
                note = f"isolated call failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        pitfalls = tuple(name for name in (torch_probe.known_pitfall(torch_model, call.path),
                                           tf_probe.known_pitfall(keras_model, keras_path)) if name)
        if pitfalls:
            note = "; ".join([note] * bool(note) + [f"exposed to pitfall {name} (docs/pitfalls.md)" for name in pitfalls])
        rows.append(LayerRow(call.path, keras_path, torch_probe.layer_kind(torch_model, call.path),
                             tf_probe.layer_kind(keras_model, keras_path), tuple(_arrays(call.output)[0].shape),
                             isolated, end_to_end, floor, note, pitfalls, isolated_floor))
    output = agreement(keras_out, torch_out, rtol=rtol, atol=atol + 2 * (output_floor or 0.0))
    return LayerReport(rows, output, rtol, atol, training, output_floor, environment(),
                       _named(unmapped_layers(torch_model, keras_model, name_map)))


def default_size(spec) -> int:
    """The smallest square input size >= 64 that ``spec``'s network takes (``spec.output_size``)."""
    for size in range(64, 2049):
        if spec.output_size(size) is not None:
            return size
    raise ValueError(f"{spec.describe()} takes no input size between 64 and 2048 ({spec.size_rule()})")


@library_warnings_dropped
def diff_architecture(spec, *, weights: dict | None = None, tf_weights: dict | None = None, batch: int = 2,
                      size: int | None = None, seed: int = 0, training: bool = False, rtol: float = RTOL,
                      atol: float = ATOL, reference: str | None = "float64") -> LayerReport:
    """``diff_models`` on a registered architecture: both frameworks built from ``spec``, loaded with
    canonical ``weights`` (default: torch's seeded initialiser with BatchNorm statistics and transposed
    convs randomised, as the parity report does), Keras with ``tf_weights`` instead when given, and
    run on a seeded standard-normal batch ``(batch, in_channels, size, size)``.
    """
    size = default_size(spec) if size is None else size
    if spec.output_size(size) is None:
        raise ValueError(f"--size {size}: {spec.describe()} does not take it ({spec.size_rule()})")
    if batch < 1:
        raise ValueError(f"--batch must be >= 1, got {batch}")
    if training and batch < 2 and spec.name.startswith("deeplabv3"):  # DeepLabV3+ and torchvision's DeepLabV3
        raise ValueError(f"--train with --batch 1: {spec.name}'s image-pooling BatchNorm would see one value per "
                         "channel, which training mode cannot normalise; use --batch 2 or more")
    torch_registry = importlib.import_module("segmentation_torch.registry")
    tf_registry = importlib.import_module("segmentation_tf.registry")
    if weights is None:
        weights = importlib.import_module("segmentation_torch.harness").random_weights(spec, seed)
    torch_model = importlib.import_module("segmentation_torch.weights").from_canonical(
        torch_registry.build_model(spec.name, **spec.options()), weights)
    keras_model = importlib.import_module("segmentation_tf.weights").from_canonical(
        tf_registry.build_model(spec.name, **spec.options()), weights if tf_weights is None else tf_weights)
    x = np.random.default_rng(seed).standard_normal((batch, spec.in_channels, size, size)).astype(np.float32)
    return diff_models(torch_model, keras_model, x, rtol=rtol, atol=atol, training=training, reference=reference)


class ParityError(AssertionError):
    """Raised by ``assert_parity``; ``report`` holds the full ``LayerReport``."""

    def __init__(self, message: str, report: LayerReport):
        super().__init__(message)
        self.report = report


@library_warnings_dropped
def assert_parity(torch_fn, tf_fn, inputs, *, rtol: float = RTOL, atol: float = ATOL,
                  name_map: dict[str, str] | None = None, training: bool = False,
                  channels_first: tuple[str, ...] = ()) -> LayerReport:
    """Assert that ``tf_fn`` gives torch_fn's output on canonical ``inputs`` within ``atol + rtol*|torch|``.

    ``torch_fn`` is a ``torch.nn.Module`` or any torch callable, ``tf_fn`` a Keras model/layer or any
    TensorFlow callable (it receives channels-last tensors). When both are models, every layer of
    ``name_map`` (default: layers whose names match) is compared too, and the assertion fails at the
    first layer over tolerance with the whole per-layer table in the message. ``channels_first`` as
    for ``diff_models``. Returns the report.
    """
    __tracebackhide__ = True  # pytest shows the caller's line and the table, not this function's source
    arrays = check_arguments(torch_fn, tf_fn, inputs, rtol, atol)
    torch_probe, tf_probe = probes()
    if torch_probe.is_model(torch_fn) and tf_probe.is_model(tf_fn):
        report = diff_models(torch_fn, tf_fn, inputs, name_map=name_map, rtol=rtol, atol=atol, training=training,
                             channels_first=channels_first)
    else:
        expected = torch_probe.run(torch_fn, arrays, training)
        actual = to_torch(tf_probe.run(tf_fn, to_keras(arrays), training))
        report = LayerReport([], agreement(actual, expected, rtol=rtol, atol=atol), rtol, atol, training,
                             environment=environment())
    if not report.passed:
        raise ParityError(f"torch and Keras disagree (rtol {rtol:g}, atol {atol:g}):\n{report.format()}", report)
    return report


@library_warnings_dropped
def transfer_weights(torch_model, keras_model, name_map: dict[str, str], *, to: str = "keras",
                     ignore: tuple[str, ...] = ()) -> list[str]:
    """Copy weights between the mapped layers, torch -> Keras (``to="keras"``) or back (``to="torch"``),
    through the canonical layout (``segparity.weights.layout``: conv, transposed conv, BatchNorm, linear).

    ``name_map`` (``{torch attribute path: Keras layer name}``) is required and checked first: every layer
    it names must exist, and every layer with weights, in either model, must be in it or in ``ignore``
    (torch paths or Keras names left out on purpose), else a ``ValueError`` names them and nothing is
    copied. Mapped layers without weights (ReLU, pooling) are skipped; a layer with weights of an unknown
    kind, or mismatched shapes, is an error naming the layer. Returns the torch paths whose weights moved.
    """
    if to not in ("keras", "torch"):
        raise ValueError(f"to must be 'keras' or 'torch', got {to!r}")
    name_map = check_name_map(torch_model, keras_model, name_map)
    left_out = [(framework, path) for framework, path in unmapped_layers(torch_model, keras_model, name_map)
                if path not in ignore]
    if left_out:
        raise ValueError(f"name_map leaves out layers with weights: {', '.join(_named(left_out))}; map each to its twin, "
                         "or name it in ignore=(...) to leave its weights as they are")
    torch_probe, tf_probe = probes()
    moved = []
    for torch_path, keras_path in name_map.items():
        if to == "keras":
            kind, tensors = torch_probe.get_layer_weights(torch_model, torch_path)
            if kind is not None:
                tf_probe.set_layer_weights(keras_model, keras_path, kind, tensors)
        else:
            kind, tensors = tf_probe.get_layer_weights(keras_model, keras_path)
            if kind is not None:
                torch_probe.set_layer_weights(torch_model, torch_path, kind, tensors)
        if kind is not None:
            moved.append(torch_path)
    return moved
