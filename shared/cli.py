"""The ``segparity`` command line.

Every command takes the same model flags (``shared/model_flags.py``): ``--arch``, ``--preset``,
``--in-channels``, ``--num-classes``, ``--model-option KEY=VALUE``, all "not given" by default. A weight file
that records its architecture (canonical ``.safetensors``, ``.keras``, and the ``.pt`` / ``.weights.h5`` files
segparity writes) gives it, and flags given as well must agree with it; a run folder does the same for
``train --resume``.

``segparity report [--arch NAME ...] [model flags] [--weights PATH] [--json PATH] [--device cpu|cuda] [--seed N]``:
build every registered architecture (or the one network the model flags or ``--weights`` describe) in both
frameworks with shared weights, run the parity checks on a synthetic batch, print the table; exit status 1
if any row fails.

``segparity train --framework torch|tf --arch NAME --out DIR [...]``: train one network
(``segmentation_{torch,tf}/train.py``; run folder layout in ``shared/training/runs.py``); a NaN or infinite training
loss stops it with a line naming the epoch and step, exit status 1, the last complete checkpoint kept.
``--resume`` continues the run in ``--out``; its ``config.json`` gives every setting not given.
``--distributed``: data-parallel, ``--batch-size`` the global batch (``segmentation_{torch,tf}/distributed.py``):
``torchrun --nproc_per_node N -m segparity.cli train --framework torch --distributed ...``, or Keras under
``tf.distribute`` (``--cpu-replicas N`` splits a CPU); ``--sync-batchnorm`` for BatchNorm over the global batch.

``segparity compare-train --arch NAME --out DIR [--steps N] [...]``: the same network, weights and
batches trained in both frameworks; per-step loss difference (``shared/parity/compare_train.py``).

``segparity convert SRC DST [model flags]``: weights between a canonical ``.safetensors`` checkpoint, a torch
``.pt``/``.pth`` state_dict, a Keras ``.weights.h5`` file and a Keras ``.keras`` archive, any way
(``shared/parity/convert.py``); the model flags are needed only for a file written outside segparity.

``segparity diff [model flags] [--weights PATH] [--tf-weights PATH] [--train] [--json PATH]``:
both frameworks on one seeded random batch with shared weights, every layer compared isolated (fed
torch's input) and end to end, the first layer over tolerance named (``shared/parity/layerdiff.py``); exit
status 1 if any layer or the output is over tolerance.

Bad arguments and bad data end with one line naming the argument, file or key (exit status 2),
before any framework is imported where possible.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from segparity import __version__
from segparity.model_flags import add_model_arguments, given_model_flags, resolve_spec
from segparity.comparison.tolerance import ATOL, RTOL
from segparity.networks.specs import list_models
from segparity.validation import printable


def _report(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from segparity.parity import suite
    from segparity.parity.machine import environment
    from segparity.parity.report import format_environment, format_summary, format_table, write_json

    try:
        cases, weights = _report_cases(args)
    except _errors() as error:
        print(f"segparity report: error: {printable(str(error))}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    versions = {**suite.harness("torch").versions(), **suite.harness("tf").versions()}
    tf32 = suite.set_tf32(False)
    env = environment()
    print(f"segparity {__version__} parity report: python {platform.python_version()}, "
          + ", ".join(f"{k} {v}" for k, v in versions.items()) + f", device {args.device}; {env['machine']['cpu']}")
    print(format_environment(env))
    print(f"TF32 switched off for parity: {tf32}; TensorFlow oneDNN ops: "
          f"{'off' if os.environ.get('TF_ENABLE_ONEDNN_OPTS') == '0' else 'on'} (TF_ENABLE_ONEDNN_OPTS="
          f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')})")
    print("Reference = torch; tolerance |tf - torch| <= atol + rtol*|torch|; gradients divided by the "
          "reference gradient's max |value| first; atol = 1e-5 + twice torch's own float32 error on that "
          "quantity, measured against a torch float64 run of the same case (docs/pitfalls.md, float32_floor).")
    print(f"A batch whose only failures are gradients, with a ReLU/max-pool input within {suite.KINK_MARGIN:g} float32 "
          f"errors of its kink, is set aside and the next one used (at most {suite.MAX_KINK_REDRAWS}; docs/pitfalls.md).")
    rows, stock = [], []
    for case in tqdm(cases, desc="parity", unit="config", file=sys.stderr, disable=None):
        counts = suite.parameter_counts(case)
        same = "equal" if counts["torch"] == counts["tf"] else "DIFFERENT"
        result = suite.run_case(case, device=args.device, weights=weights)
        note = "".join(f"; batch {seed} set aside: gradients split at a ReLU/max-pool kink (margin {margin:.1f})"
                       for seed, margin in result.redrawn)
        tqdm.write(f"{case.arch} [{case.label()}]: parameters torch {counts['torch']:,} / tf {counts['tf']:,} "
                   f"({same}); data seed {result.inputs.data_seed}{note}")
        rows += result.rows
        if not any(r.arch == case.arch for r in stock):  # each architecture's first configuration
            stock += suite.stock_rows(case, result, device=args.device)
        if counts["torch"] != counts["tf"]:
            rows.append(suite.Row(case.arch, case.label(), "parameter_count", abs(counts["torch"] - counts["tf"]),
                                  1.0, 0.0, 0.0, False))
    print(format_table(rows))
    print("\nWorst case per architecture and quantity:")
    print(format_summary(rows))
    failed = [r for r in rows if not r.passed]
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed ({len(cases)} configuration{'s' if len(cases) != 1 else ''}, "
          f"{time.perf_counter() - start:.1f} s)")
    for r in failed:
        print(f"FAIL {r.arch} [{r.config}] {r.quantity}: {r.detail}")
    print('\nStock layers (build_model(..., layers="stock"): torch.nn.BatchNorm2d, keras.layers.BatchNormalization) '
          "against torch's parity flavour, on each architecture's first configuration: the same weights, batch, "
          "tolerance and floors. Informational, not held to the bar (benchmarks/README.md); the exit status ignores it.")
    print(format_table(stock, verdicts=("within", "over")))
    if args.json:
        write_json(rows, args.json, env, stock_rows=stock)

        print(f"rows written to {args.json}")
    return 1 if failed else 0


def _report_cases(args: argparse.Namespace):
    """``(cases, weights)``: the built-in suite of each ``--arch`` (weights None: random), or, with model flags
    or ``--weights``, the one network they describe (weights: the file's canonical tensors, or None)."""
    from segparity.parity import suite
    from segparity.parity.convert import read_weights, recorded_spec

    if not args.weights and not given_model_flags(args):
        return [case for arch in (args.arch or list_models()) for case in suite.SUITES[arch](seed=args.seed)], None
    if args.arch and len(args.arch) > 1:
        raise ValueError("--weights, --preset, --in-channels, --num-classes and --model-option describe one "
                         f"network: give one --arch, not {len(args.arch)}")
    recorded = recorded_spec(args.weights) if args.weights else None
    spec = resolve_spec(args, recorded, source=args.weights or "")
    if not args.weights:
        return [suite.spec_case(spec, seed=args.seed)], None
    weights = read_weights(args.weights, spec)[0]
    return [suite.spec_case(spec, seed=args.seed, weights_from=Path(args.weights).name)], weights


def _config(args: argparse.Namespace, framework: str):
    """The ``TrainConfig`` the flags give; with ``--resume``, the run folder's ``config.json`` gives every
    setting not given (architecture and model options included), and those given must agree with it."""
    from segparity.training.config import make_config

    given = {name: getattr(args, name, None) for name in (
        "data", "epochs", "batch_size", "lr", "lr_decay", "optimizer", "momentum", "weight_decay", "loss", "image_size",
        "num_classes", "synthetic_classes", "synthetic_samples", "seed", "skip_bad", "mask_threshold",
        "init_weights", "device", "task", "embedding_dim", "threshold", "sync_batchnorm")}
    given["split"] = tuple(args.split) if args.split else None
    given["augment"] = getattr(args, "augment", None)
    given["model_options"] = dict(args.model_option) if args.model_option else None
    if args.in_channels is not None and args.in_channels != 3:
        raise ValueError(f"--in-channels {args.in_channels}: the training data are RGB images, so in_channels is 3")
    arch, preset = (args.arch[0] if isinstance(args.arch, list) else args.arch), args.preset
    stored_file = Path(args.out) / "config.json"
    if getattr(args, "resume", False) and stored_file.is_file():
        stored = json.loads(stored_file.read_text())
        arch, preset = arch or stored.get("arch"), preset or stored.get("preset")
        given["model_options"] = {**stored.get("model_options", {}), **(given["model_options"] or {})}
        given = {**{k: v for k, v in stored.items() if k in given}, **{k: v for k, v in given.items() if v is not None}}
        given["split"] = tuple(given["split"]) if given.get("split") is not None else None
    if arch is None:
        raise ValueError("--arch is required (or --resume, where the run folder records it)")
    return make_config(framework, arch, preset=preset, **given)


def _errors():
    """The errors that mean bad arguments or data (reported in one line), not a bug."""
    from segparity.weights.checkpoint import CheckpointError
    from segparity.data.samples import DatasetError
    from segparity.training.runs import RunError

    return (ValueError, TypeError, FileNotFoundError, DatasetError, RunError, CheckpointError)


def _train(args: argparse.Namespace) -> int:
    from segparity.training.config import NonFiniteLossError

    try:
        config = _config(args, args.framework)
        if args.cpu_replicas != 1 and not args.distributed:
            raise ValueError(f"--cpu-replicas {args.cpu_replicas} splits the CPU for a --distributed run; add --distributed")
        rows = importlib.import_module(f"segmentation_{args.framework}.train").train(
            config, args.out, resume=args.resume, progress=not args.quiet, distributed=args.distributed,
            cpu_replicas=args.cpu_replicas)
    except _errors() as error:
        print(f"segparity train: error: {printable(str(error))}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:  # the run diverged: not bad input, a failed run
        print(f"segparity train: stopped: {error}", file=sys.stderr)
        return 1
    if args.distributed and os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 reports for all
        return 0
    last = rows[-1]
    print(f"{config.arch} ({args.framework}) after {int(last['epoch'])} epochs: val_loss {last['val_loss']:.4f}, "
          f"val_iou {last['val_iou']:.4f}, val_dice {last['val_dice']:.4f}, val_accuracy {last['val_accuracy']:.4f}")
    if config.task != "semantic":
        from segparity.training.instance_report import PANOPTIC_FILE

        scores = json.loads((Path(args.out) / PANOPTIC_FILE).read_text())
        for name in ("embedding", "semantic_only"):
            s = scores[name]
            shown = {key: "n/a" if value is None else f"{value:.3f}" for key, value in (
                ("pq", s["pq"]), ("sq", s["sq"]), ("rq", s["rq"]), ("things", s["things"]["pq"]),
                ("stuff", s["stuff"]["pq"]), ("f1", s["instance_f1"]), ("sbd", s["sbd"]))}
            print(f"{config.task}, {name.replace('_', ' ')} on {scores['images']} validation images: PQ {shown['pq']} "
                  f"(SQ {shown['sq']}, RQ {shown['rq']}); things PQ {shown['things']}, stuff PQ {shown['stuff']}; "
                  f"instance F1 {shown['f1']}, SBD {shown['sbd']}")
    print(f"metrics, checkpoints and plots in {args.out}")
    return 0


def _compare_train(args: argparse.Namespace) -> int:
    from segparity.parity import compare_train as compare

    try:
        config = _config(args, "torch")
        dtype = "float64" if args.float64 else "float32"
        result = compare.compare_train(config, args.steps, args.out, dtype=dtype, progress=not args.quiet)
    except _errors() as error:
        print(f"segparity compare-train: error: {printable(str(error))}", file=sys.stderr)
        return 2
    print(compare.summary_table(result))
    print(f"{dtype}, {args.steps} steps: max relative loss difference {result.relative().max():.2e}; first step "
          f"above 1e-4: {result.first_step_above(1e-4) or 'none'}, above 1e-3: {result.first_step_above(1e-3) or 'none'}; "
          f"max |tf - torch| of the weights after the last step: {result.weight_diff:.2e}")
    outside = result.first_step_outside()
    if result.reference_loss is not None:
        print(f"torch's own float32 drift (against torch float64) reaches {result.floor().max():.2e}; "
              f"first step where tf - torch exceeds {compare.SGD_RTOL:g} + 2 x that drift: {outside or 'none'}")
    print(f"steps.csv, loss_curves.png and init.safetensors in {args.out}")
    if config.optimizer == "sgd" and outside is not None and outside <= compare.SGD_STEPS:
        print(f"FAIL: with SGD, tf must stay within {compare.SGD_RTOL:g} + 2 x torch's float32 drift for the first "
              f"{compare.SGD_STEPS} steps (docs/training.md)")
        return 1
    return 0


def _convert(args: argparse.Namespace) -> int:
    from segparity.parity.convert import convert, recorded_spec

    try:
        spec = resolve_spec(args, recorded_spec(args.source), source=args.source)
        spec = convert(args.source, args.target, spec)
    except _errors() as exc:
        print(f"segparity convert: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    print(f"{args.source} -> {args.target}: {spec.describe()}, {len(spec.layer_table())} layers")
    return 0


def _diff(args: argparse.Namespace) -> int:
    from segparity.atomic import atomic_write
    from segparity.parity.convert import read_weights, recorded_spec
    from segparity.parity import suite
    from segparity.parity.layerdiff import diff_architecture
    from segparity.parity.report import format_environment

    try:
        spec = resolve_spec(args, recorded_spec(args.weights) if args.weights else None, source=args.weights or "")
        weights = read_weights(args.weights, spec)[0] if args.weights else None
        tf_weights = read_weights(args.tf_weights, spec)[0] if args.tf_weights else None
        suite.set_tf32(False)  # as in the parity report: TF32 keeps 10 mantissa bits on Ampere+ GPUs
        report = diff_architecture(spec, weights=weights, tf_weights=tf_weights, batch=args.batch, size=args.size,
                                   seed=args.seed, training=args.train, rtol=args.rtol, atol=args.atol,
                                   reference=None if args.no_floor else "float64")
    except (*_errors(), KeyError) as exc:
        print(f"segparity diff: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    env = report.environment
    print(f"segparity {__version__} layer diff of {spec.describe()}: "
          f"{'training' if args.train else 'inference'} mode, seed {args.seed}; python {env['machine']['python']}, "
          f"{env['machine']['cpu']}")
    print(format_environment(env))
    print(report.format())
    if args.json:
        text = json.dumps(report.to_json(), indent=1) + "\n"
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(text))
        print(f"report written to {args.json}")
    if args.png:
        report.plot(args.png, title=f"segparity diff {spec.describe()}, {'training' if args.train else 'eval'} mode, "
                    f"seed {args.seed}: {'pass' if report.passed else 'FAIL'}")
        print(f"picture written to {args.png}")
    return 0 if report.passed else 1


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``train`` and ``compare-train``; None means "not given" (preset, then default)."""
    from segparity.training.config import LOSSES, OPTIMIZERS

    add_model_arguments(parser)  # the lesson presets also set their training (docs/lesson.md)
    parser.add_argument("--data", help="synthetic (default), ph2:DIR or mads:DIR")
    parser.add_argument("--batch-size", type=int, help="default 16")
    parser.add_argument("--lr", type=float, help="default 1e-3")
    parser.add_argument("--lr-decay", type=float, help="Keras 2's legacy decay: step t uses lr / (1 + D t); default 0")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="default adam")
    parser.add_argument("--momentum", type=float, help="SGD momentum, default 0")
    parser.add_argument("--weight-decay", type=float, help="L2 added to the gradient, default 0")
    parser.add_argument("--loss", choices=tuple(LOSSES), help="default bce for one output channel, else ce")
    parser.add_argument("--image-size", type=int, help="square size images are resized or drawn at, default 64")
    parser.add_argument("--synthetic-classes", type=int, help="synthetic label classes incl. background, default 3")
    parser.add_argument("--synthetic-samples", type=int, help="synthetic dataset size, default 512")
    parser.add_argument("--split", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"), help="default 0.8 0.1 0.1")
    parser.add_argument("--seed", type=int, help="split, batch order, augmentation, initialiser; default 0")
    parser.add_argument("--skip-bad", action="store_true", default=None,
                        help="leave out unreadable or mismatched image/mask pairs (each named and counted) instead of stopping")
    parser.add_argument("--mask-threshold", type=int, help="foreground = mask value > T (for lossily saved masks)")
    parser.add_argument("--threshold", type=float, help="one output channel: label 1 above T in the metrics and "
                        "pictures; default 0 (a logit), 0.5 for a network that ends in a sigmoid")
    parser.add_argument("--init-weights", metavar="PATH", help="canonical checkpoint to start from")
    parser.add_argument("--device", choices=("cpu", "cuda"))
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segparity", description="Segmentation networks in PyTorch and Keras, proven equal.")
    parser.add_argument("--version", action="version", version=f"segparity {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="parity report of every architecture on synthetic data")
    add_model_arguments(report, several=True)
    report.add_argument("--weights", metavar="PATH", help="check these weights (.safetensors, .pt/.pth, .weights.h5, "
                        ".keras) instead of the built-in configurations; the file's architecture unless it records none")
    report.add_argument("--json", metavar="PATH",
                        help='also write {"environment": {...}, "rows": [{"arch", "config", "quantity", ...}, ...]}')
    report.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    report.add_argument("--seed", type=int, default=0, help="seed of weights and synthetic data (default 0)")
    report.set_defaults(run=_report)

    train = commands.add_parser("train", help="train one network in one framework")
    train.add_argument("--framework", required=True, choices=("torch", "tf"))
    _add_run_arguments(train)
    train.add_argument("--epochs", type=int, help="default 10")
    train.add_argument("--augment", action="store_true", default=None, help="random flips and 90-degree rotations")
    train.add_argument("--task", choices=("semantic", "instance", "panoptic"),
                       help="semantic (default); instance or panoptic: logits plus an embedding, discriminative loss, "
                       "clustered into instances (synthetic data)")
    train.add_argument("--embedding-dim", type=int, help="instance/panoptic: embedding channels, default 8")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over several replicas, --batch-size being the global batch: torch under "
                            "torchrun (DistributedDataParallel), tf under tf.distribute (MirroredStrategy; "
                            "MultiWorkerMirroredStrategy when TF_CONFIG is set)")
    train.add_argument("--sync-batchnorm", action="store_true", default=None,
                       help="--distributed: BatchNorm statistics over the global batch, not each replica's part")
    train.add_argument("--cpu-replicas", type=int, default=1, metavar="N",
                       help="--distributed --framework tf on a CPU: split it into N logical devices (default 1)")
    train.set_defaults(run=_train)

    compare = commands.add_parser("compare-train", help="train in both frameworks from the same weights on the same batches")
    _add_run_arguments(compare)
    compare.add_argument("--steps", type=int, default=50, help="optimiser steps (default 50)")
    compare.add_argument("--float64", action="store_true", help="run both frameworks in float64 (no float32 drift)")
    compare.set_defaults(run=_compare_train)

    conv = commands.add_parser("convert", help="weights between canonical .safetensors, torch .pt/.pth, Keras .weights.h5 and .keras")
    conv.add_argument("source", metavar="SRC")
    conv.add_argument("target", metavar="DST")
    add_model_arguments(conv)
    conv.set_defaults(run=_convert)

    diff = commands.add_parser("diff", help="layer-by-layer torch/Keras divergence, isolated and end to end")
    add_model_arguments(diff)
    diff.add_argument("--weights", metavar="PATH", help="weights for both (.safetensors, .pt/.pth, .weights.h5, .keras); "
                      "default: seeded random weights")
    diff.add_argument("--tf-weights", metavar="PATH", help="different weights for the Keras model (e.g. another converter's output)")
    diff.add_argument("--batch", type=int, default=2, help="images in the random batch (default 2)")
    diff.add_argument("--size", type=int, help="square input size (default: the smallest >= 64 the network takes)")
    diff.add_argument("--seed", type=int, default=0, help="seed of the input (and of random weights), default 0")
    diff.add_argument("--train", action="store_true", help="training mode (BatchNorm batch statistics)")
    diff.add_argument("--rtol", type=float, default=RTOL, help=f"default {RTOL:g}")
    diff.add_argument("--atol", type=float, default=ATOL, help=f"default {ATOL:g}")
    diff.add_argument("--no-floor", action="store_true",
                      help="skip torch's float64 run; judge end-to-end rows at the bare atol")
    diff.add_argument("--json", metavar="PATH", help="also write the whole report as JSON")
    diff.add_argument("--png", metavar="PATH", help="also draw it: max relative error per layer, isolated and end to "
                      "end, log scale, rtol as a line, the first layer over tolerance marked")
    diff.set_defaults(run=_diff)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
