"""The model flags every ``segparity`` command takes, built once: ``--arch``, ``--preset``, ``--in-channels``,
``--num-classes``, ``--model-option KEY=VALUE``.

Every flag defaults to "not given" (``None``), and a command resolves the network the same way
(``resolve_spec``):

1. a file that records its architecture (a canonical ``.safetensors``, a ``.keras`` archive, a ``.pt`` or
   ``.weights.h5`` that segparity wrote; ``segparity.parity.convert.recorded_spec``) gives it, and every flag given
   as well must agree with it, else a ``CheckpointError`` names the option, the file's value and the flag's;
2. otherwise ``--arch`` is required, and the options are the flags given, then the preset's, then the
   network's defaults (torchvision's models: 3 and 21), with ``in_channels`` 3 and ``num_classes`` 2 unless given (``train`` takes the
   number of classes from its data instead; ``segparity.training.config``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from segparity.weights.checkpoint import CheckpointError
from segparity.networks.specs import PRESETS, list_models, make_spec, required_options

FALLBACK = {"in_channels": 3, "num_classes": 2}  # when neither a file, the flags nor a preset give them


def model_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (``depth=3``, ``batch_norm=false``), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_model_arguments(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """Add the model flags to ``parser``. ``several``: ``--arch`` takes several names (``report``)."""
    parser.add_argument("--arch", choices=list_models(), nargs="+" if several else None, metavar="NAME",
                        help=f"network: {', '.join(list_models())} (default: the one a weight file records; "
                        "report without one: all)")
    parser.add_argument("--preset", metavar="P", help="named configuration (paper, lesson; shared/networks/specs.py); for train and "
                        "compare-train, lesson also sets the lesson's training (docs/training.md)")
    parser.add_argument("--in-channels", type=int, metavar="N", help="input channels (default: the file's, else the preset's, else 3)")
    parser.add_argument("--num-classes", type=int, metavar="N",
                        help="output classes (default: the file's, else the preset's, else 2; train: its data's)")
    parser.add_argument("--model-option", action="append", type=model_option, metavar="KEY=VALUE",
                        help="build_model option, e.g. base_channels=16 (repeatable)")


def given_model_flags(args: argparse.Namespace) -> bool:
    """Whether any model flag besides ``--arch`` was given."""
    return bool(args.preset or args.in_channels is not None or args.num_classes is not None or args.model_option)


def _given_values(arch: str, args: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    """option -> (value, the flag that gave it): the preset's values, then the explicit flags over them."""
    values: dict[str, tuple[Any, str]] = {}
    if args.preset:
        make_spec(arch, preset=args.preset, in_channels=1, num_classes=1)  # an unknown preset is named here
        values.update({k: (v, f"--preset {args.preset}") for k, v in PRESETS[arch][args.preset].items()})
    for key, value in args.model_option or []:
        values[key] = (value, f"--model-option {key}={json.dumps(value)}")
    for key, flag in (("in_channels", "--in-channels"), ("num_classes", "--num-classes")):
        if getattr(args, key) is not None:
            values[key] = (getattr(args, key), f"{flag} {getattr(args, key)}")
    return values


def check_against_recorded(recorded, args: argparse.Namespace, source: str) -> None:
    """Raise ``CheckpointError`` naming each flag that disagrees with the spec ``source`` records."""
    arch = args.arch[0] if isinstance(args.arch, list) else args.arch
    if arch is not None and arch != recorded.name:
        raise CheckpointError(f"{source} records a {recorded.name} ({recorded.describe()}); --arch gives {arch}")
    given = _given_values(recorded.name, args)
    stored = recorded.options()
    try:  # the flags' values normalised by the spec itself (JSON lists become the spec's tuples)
        wanted = make_spec(recorded.name, **{**stored, **{k: v for k, (v, _) in given.items()}}).options()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source} records {recorded.describe()}; the flags given do not describe one: {exc}") from None
    problems = [f"{key}: {source} records {stored[key]!r}, {flag} gives {wanted[key]!r}"
                for key, (_, flag) in given.items() if wanted[key] != stored[key]]
    if problems:
        raise CheckpointError(f"{source} records {recorded.describe()}; the flags disagree with it (leave them out "
                              "to use the file's):\n  " + "\n  ".join(problems))


def resolve_spec(args: argparse.Namespace, recorded=None, *, source: str = "", fallback: dict | None = None):
    """The spec the model flags describe; ``recorded``: the spec a weight file ``source`` records (or None).

    ``fallback``: ``in_channels`` / ``num_classes`` when neither the flags nor the preset give them
    (default: ``FALLBACK`` for a network that has no default of its own).
    """
    if recorded is not None:
        check_against_recorded(recorded, args, source)
        return recorded
    arch = args.arch[0] if isinstance(args.arch, list) else args.arch
    if arch is None:
        where = f"{source} does not record the architecture" if source else "no weight file gives the architecture"
        raise CheckpointError(f"{where}: give --arch NAME (and --preset / --model-option as it was built)")
    preset = PRESETS.get(arch, {}).get(args.preset, {}) if args.preset else {}
    if fallback is None:  # the network's own defaults first (torchvision's models: 3 and 21), then FALLBACK
        fallback = {key: value for key, value in FALLBACK.items() if key in required_options(arch)}
    sizes = {key: getattr(args, key) if getattr(args, key) is not None else (None if key in preset else fallback.get(key))
             for key in ("in_channels", "num_classes")}
    return make_spec(arch, preset=args.preset, **sizes, **dict(args.model_option or []))
