"""Where a training step's time goes, per op, in both frameworks:
``python -m benchmarks.profile_ops --arch unet [--precision bf16] [--task train_step] [--layers stock] [--real-size]
[--markdown PATH]``.

The case is the architecture's ``cases.FULL`` configuration (``--real-size``: its ``cases.REAL_SIZE`` one) in the layer
flavour ``--layers``; torch runs its ``channels_last`` mode under
``torch.profiler`` (self CPU time per aten op), Keras its ``tf.function`` mode under TensorFlow's
profiler (self time per op type, read back with the profiler plugin that ships inside TensorFlow). Each
framework runs in its own process with the benchmark's thread pinning; times are per step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import cases
from segparity.parity.machine import cpu_model
from segparity.atomic import atomic_write


def _case(arch: str, real_size: bool, layers: str) -> cases.Case:
    known = cases.REAL_SIZE if real_size else cases.FULL
    for case in known:
        if case.arch == arch:
            return dataclasses.replace(case, layers=layers)
    raise SystemExit(f"profile_ops: no benchmark case for arch {arch!r}; known: {', '.join(c.arch for c in known)}")


def torch_ops(case: cases.Case, task: str, precision: str, steps: int, threads: int) -> dict[str, float]:
    """aten op -> self CPU ms per step."""
    import torch

    from benchmarks import torch_modes

    torch_modes.threads(threads)
    step = torch_modes.step_function(case, task, "channels_last", precision, "cpu")
    for _ in range(3):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(steps):
            step()
    return {event.key: event.self_cpu_time_total / 1e3 / steps for event in profile.key_averages()}


def tf_ops(case: cases.Case, task: str, precision: str, steps: int, threads: int) -> dict[str, float]:
    """TensorFlow op type -> self ms per step."""
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin  # ships with TensorFlow

    from benchmarks import tf_modes

    tf_modes.threads(threads)
    step = tf_modes.step_function(case, task, "function", precision, "cpu")
    for _ in range(3):
        step()
    with tempfile.TemporaryDirectory() as folder:
        tf.profiler.experimental.start(folder)
        for _ in range(steps):
            step()
        tf.profiler.experimental.stop()
        planes = [str(p) for p in Path(folder).rglob("*.xplane.pb")]
        data, ok = _pywrap_profiler_plugin.xspace_to_tools_data(planes, "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"TensorFlow's profiler plugin could not read the trace: {data[:200]!r}")
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    out: dict[str, float] = {}
    for row in table["rows"]:
        values = dict(zip(columns, (cell["v"] for cell in row["c"])))
        if values["type"] in ("IDLE", "_Retval", "_Arg"):
            continue
        out[values["type"]] = out.get(values["type"], 0.0) + values["total_self_time"] / 1e3 / steps  # us -> ms
    return out


def markdown(profiles: dict[str, dict[str, float]], title: str, top: int) -> str:
    lines = [title, ""]
    for framework, ops in profiles.items():
        total = sum(ops.values())
        lines += [f"**{framework}**: {total:.1f} ms of op self time per step", "",
                  "| op | ms per step | share |", "|---|---|---|"]
        for name, ms in sorted(ops.items(), key=lambda item: -item[1])[:top]:
            lines.append(f"| `{name}` | {ms:.1f} | {ms / total:.0%} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_ops", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="unet")
    parser.add_argument("--task", choices=cases.TASKS, default="train_step")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--layers", choices=cases.LAYER_FLAVOURS, default="parity")
    parser.add_argument("--real-size", action="store_true", help="the architecture's cases.REAL_SIZE configuration")
    parser.add_argument("--markdown", metavar="PATH")
    parser.add_argument("--framework", choices=("torch", "tf"), help=argparse.SUPPRESS)  # one side, JSON out
    args = parser.parse_args(argv)
    case = _case(args.arch, args.real_size, args.layers)
    if args.framework:
        profile = {"torch": torch_ops, "tf": tf_ops}[args.framework]
        print("PROFILE " + json.dumps(profile(case, args.task, args.precision, args.steps, args.threads)))
        return 0
    profiles = {}
    for framework in ("torch", "tf"):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
        done = subprocess.run([sys.executable, "-m", "benchmarks.profile_ops", *(argv if argv is not None else sys.argv[1:]),
                               "--framework", framework], capture_output=True, text=True, env=env,
                              cwd=Path(__file__).resolve().parents[1])
        lines = [line for line in done.stdout.splitlines() if line.startswith("PROFILE ")]
        if not lines:
            print(f"profile_ops: {framework} failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}",
                  file=sys.stderr)
            return 1
        profiles[framework] = json.loads(lines[0][len("PROFILE "):])
    title = (f"Op profile: {case.label()} {args.task}, {args.precision}, {case.layers} layers, torch channels_last vs "
             f"tf function, {cpu_model()}, {args.threads} threads, mean of {args.steps} steps")
    text = markdown(profiles, title, args.top)
    print(text)
    if args.markdown:
        atomic_write(args.markdown, lambda tmp: Path(tmp).write_text(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
