"""Issue 26: `segparity train --distributed` in both frameworks, proven by equal numbers.

Two torch processes over gloo (started by ``torchrun``, as a user starts them) and TensorFlow's
``MirroredStrategy`` over two logical CPU devices (in a fresh process: the CPU can be split only before
TensorFlow starts) train the same tiny U-Net from one canonical checkpoint, with global batch 8 (4 per replica),
SGD with momentum and cross-entropy. With synchronised BatchNorm each distributed step is the single-process
step on the global batch, within the parity tolerance (rtol 1e-4, atol 1e-5) on every tensor, BatchNorm
statistics and momentum included; torch-distributed and TF-distributed agree with each other the same way.
Without synchronisation each replica normalises by its own half batch: the difference is measured and is
the number docs/training.md quotes.

One torch run is killed (SIGKILL to rank 1) after its first checkpoint: the checkpoint reads, and ``--resume``
on one process continues it to the end an uninterrupted single-process run reaches. Every subprocess has a
timeout; a rank that dies fails the test with its output.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import segmentation_torch.train as torch_train
from segmentation_torch.weights import to_canonical
from segparity.comparison.tolerance import compare
from segparity.training.config import make_config, prepare_data
from segparity.training.runs import RunFolder
from segparity.weights.checkpoint import read_checkpoint, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = dict(arch="unet", model_options={"base_channels": 4, "depth": 2}, synthetic_samples=20,
                split=(0.8, 0.2, 0.0), image_size=16, batch_size=8, optimizer="sgd", momentum=0.9, lr=0.1)
EPOCHS_ASKED = 400  # the killed run's: far more than it reaches before the kill
FLAGS = ["--arch", "unet", "--model-option", "base_channels=4", "--model-option", "depth=2",
         "--synthetic-samples", "20", "--split", "0.8", "0.2", "0", "--image-size", "16", "--batch-size", "8",
         "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.1", "--quiet"]
TIMEOUT = 120  # seconds for any one subprocess; a hung rank fails the test instead of hanging the suite
DOC = ROOT / "docs" / "training.md"


def _config(init: Path | None, epochs: int, sync: bool = True, framework: str = "torch"):
    return make_config(framework, init_weights=init and str(init), epochs=epochs, sync_batchnorm=sync or None,
                       **SETTINGS)


def _environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(out: Path, init: Path, epochs: int, sync: bool) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "segparity.cli", "train", "--framework", "torch", "--distributed", *FLAGS,
               "--init-weights", str(init), "--epochs", str(epochs), "--out", str(out)]
    if sync:
        command.append("--sync-batchnorm")
    return subprocess.Popen(command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _finish(process: subprocess.Popen, timeout: float = TIMEOUT) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"timed out after {timeout} s:\n{output[-4000:]}")
    return output


def _rank_pid(launcher: int, rank: int) -> int:
    """The pid of the worker ``torchrun`` (pid ``launcher``) started as ``rank``: a process whose parent is the
    launcher (field 4 of ``/proc/PID/stat``) and whose environment has ``RANK=rank``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0") if parent == launcher else []
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            continue
        if f"RANK={rank}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"torchrun (pid {launcher}) has no worker of rank {rank}")


def _differences(actual: dict, expected: dict) -> list:
    assert sorted(actual) == sorted(expected)
    return [compare(actual[key], expected[key], quantity=key) for key in expected]


def _worst(comparisons: list):
    return max(comparisons, key=lambda c: c.max_abs)


def _tf_worker(folder: Path, config, out: Path, *mode: str) -> subprocess.Popen:
    """tests/distributed_tf_worker.py on ``config`` (written to ``folder/config.json``), in a fresh process."""
    config_file = folder / "config.json"
    config_file.write_text(json.dumps(config.to_dict()))
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "distributed_tf_worker.py"), *mode, str(config_file),
                             str(out)], env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _initial_weights(folder: Path) -> Path:
    """The runs' one canonical initial checkpoint (torch's initialiser, seed 0)."""
    model, _, _ = torch_train.build_run(_config(None, 1), 3)
    init = folder / "init.safetensors"
    write_checkpoint(init, to_canonical(model), model.spec)
    return init


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The runs every test here compares: the killed torch run, the TF runs, single-process references."""
    folder = tmp_path_factory.mktemp("distributed")
    init = _initial_weights(folder)

    # torch, synchronised BatchNorm, killed after its first checkpoint
    killed = folder / "killed"
    launcher = _torchrun(killed, init, EPOCHS_ASKED, sync=True)
    pointer = killed / "checkpoints" / "latest.json"
    deadline = time.monotonic() + TIMEOUT
    while not pointer.is_file():
        if launcher.poll() is not None:
            pytest.fail(f"torchrun ended before its first checkpoint:\n{_finish(launcher)[-4000:]}")
        if time.monotonic() > deadline:
            _finish(launcher, timeout=0.1)
        time.sleep(0.02)
    os.kill(_rank_pid(launcher.pid, 1), signal.SIGKILL)
    killed_output = _finish(launcher)
    killed_code = launcher.returncode

    # TensorFlow, two logical CPU devices, synchronised BatchNorm, as many epochs as the killed run saved
    checkpoint = RunFolder(killed).latest()  # read now: a test resumes the run in place
    saved = checkpoint.epoch
    tf_out = folder / "tf"
    tf_run = _tf_worker(folder, _config(init, saved, framework="tf"), tf_out)
    # meanwhile: torch without synchronisation (one epoch), and the single-process references: one whole run (its
    # checkpoint holds the optimiser state and metrics rows), the others as train_steps (the same steps, no plots)
    plain = folder / "plain"
    plain_run = _torchrun(plain, init, 1, sync=False)
    torch_train.train(_config(init, saved), folder / "single", progress=False)
    single = {(saved, True): read_checkpoint(folder / "single" / "weights.safetensors")[0]}
    for epochs, sync in ((saved + 1, True), (1, False)):
        config = _config(init, epochs, sync)
        data = prepare_data(config, folder / "split.json", progress=False, save=False)
        steps_per_epoch = -(-len(data.train) // config.batch_size)
        single[epochs, sync] = torch_train.train_steps(config, data, epochs * steps_per_epoch)[1]
    plain_output = _finish(plain_run)
    assert plain_run.returncode == 0, plain_output[-4000:]
    tf_output = _finish(tf_run)
    assert tf_run.returncode == 0, tf_output[-4000:]
    return dict(folder=folder, init=init, killed=killed, killed_code=killed_code, killed_output=killed_output,
                checkpoint=checkpoint, saved=saved, plain=plain, plain_output=plain_output, single=single, tf=tf_out)


def test_killing_one_rank_leaves_a_readable_checkpoint_that_resumes_on_one_process(runs):
    """SIGKILL to rank 1 ends the torchrun job (non-zero) before it finishes; the last checkpoint reads; ``--resume``
    without ``--distributed`` (2 -> 1 processes) trains one more epoch and ends within tolerance of an uninterrupted
    single-process run of that many epochs."""
    assert runs["killed_code"] != 0, runs["killed_output"][-2000:]
    assert not (runs["killed"] / "weights.safetensors").exists()  # it did not finish
    saved = runs["saved"]
    assert 1 <= saved < EPOCHS_ASKED
    rows = torch_train.train(_config(runs["init"], saved + 1), runs["killed"], resume=True, progress=False)
    assert [row["epoch"] for row in rows] == list(range(1, saved + 2))
    resumed, _ = read_checkpoint(runs["killed"] / "weights.safetensors")
    comparisons = _differences(resumed, runs["single"][saved + 1, True])
    assert all(c.passed for c in comparisons), _worst(comparisons)


def test_a_torch_distributed_step_is_the_single_process_step_on_the_global_batch(runs):
    """With --sync-batchnorm, the weights, BatchNorm statistics and SGD momentum the 2-process run saved equal the
    single-process run's after the same epochs (2 steps each), and so does every metrics.csv number (losses and
    metrics summed over the processes)."""
    checkpoint = runs["checkpoint"]
    comparisons = _differences(checkpoint.weights, runs["single"][runs["saved"], True])
    assert all(c.passed for c in comparisons), _worst(comparisons)
    single_run = RunFolder(runs["folder"] / "single").latest()
    momentum = [compare(checkpoint.optimizer[key], single_run.optimizer[key], quantity=key)
                for key in single_run.optimizer]
    assert momentum and all(c.passed for c in momentum), _worst(momentum)
    for distributed_row, single_row in zip(checkpoint.rows, single_run.rows, strict=True):
        for column in ("loss", "iou", "dice", "accuracy", "val_loss", "val_iou"):
            assert distributed_row[column] == pytest.approx(single_row[column], rel=1e-4, abs=1e-5), column


def test_tf_mirrored_strategy_step_is_the_single_process_step_and_agrees_with_torch_distributed(runs):
    """MirroredStrategy over two logical CPU devices with synchronised BatchNorm ends where single-process torch
    ends (which single-process Keras matches: tests/test_train.py) and where the 2-process torch run's checkpoint
    stands, through the canonical weights."""
    tf_weights, _ = read_checkpoint(runs["tf"] / "sync" / "weights.safetensors")
    comparisons = _differences(tf_weights, runs["single"][runs["saved"], True])
    assert all(c.passed for c in comparisons), _worst(comparisons)
    torch_distributed = runs["checkpoint"].weights
    comparisons = _differences(tf_weights, torch_distributed)
    assert all(c.passed for c in comparisons), _worst(comparisons)


def _documented(name: str) -> float:
    found = re.search(rf"<!-- {name} -->\s*([0-9.]+(?:e-?[0-9]+)?)", DOC.read_text())
    assert found, f"docs/training.md quotes no number tagged <!-- {name} -->"
    return float(found.group(1))


def _plain_difference(weights: dict, single: dict, name: str):
    worst = _worst(_differences(weights, single))
    assert not worst.passed  # a real difference, far outside the tolerance
    assert float(f"{worst.max_abs:.2g}") == _documented(name), (name, worst)


def test_without_synchronised_batchnorm_the_difference_is_measured_and_documented(runs):
    """Plain BatchNorm normalises each process's half batch by its own statistics: after one epoch (2 steps) the
    weights of the 2-process torch run (DDP; rank 0's running statistics broadcast) move away from the single-process
    run's by the amount docs/training.md states (2 significant digits). Keras: the slow test below."""
    torch_plain, _ = read_checkpoint(runs["plain"] / "weights.safetensors")
    _plain_difference(torch_plain, runs["single"][1, False], "torch-plain")


@pytest.fixture(scope="module")
def keras_plain(tmp_path_factory):
    """One epoch of Keras's MirroredStrategy (two logical CPU devices) without synchronised BatchNorm, the
    single-process torch run it is measured against, and pitfall tf_distribute_scalar_loss's numbers."""
    folder = tmp_path_factory.mktemp("keras_plain")
    init = _initial_weights(folder)
    worker = _tf_worker(folder, _config(init, 1, sync=False, framework="tf"), folder / "tf", "--plain")
    torch_train.train(_config(init, 1, sync=False), folder / "single", progress=False)
    output = _finish(worker)
    assert worker.returncode == 0, output[-4000:]
    return dict(tf=read_checkpoint(folder / "tf" / "plain" / "weights.safetensors")[0],
                single=read_checkpoint(folder / "single" / "weights.safetensors")[0],
                pitfall=json.loads((folder / "tf" / "pitfall.json").read_text()),
                instance_refusal=(folder / "tf" / "instance_refusal.txt").read_text(),
                instance_folder=folder / "tf" / "instance")


@pytest.mark.slow
def test_keras_without_synchronised_batchnorm_the_difference_is_measured_and_documented(keras_plain):
    """As the torch test above, for Keras's MirroredStrategy: each replica normalises its contiguous half of the batch
    (torch's DistributedSampler interleaves, so the two differ from each other too), and each keeps its own running
    statistics (the checkpoint holds the first replica's). Slow: a fresh TensorFlow process."""
    _plain_difference(keras_plain["tf"], keras_plain["single"], "tf-plain")


@pytest.mark.slow
def test_pitfall_tf_distribute_scalar_loss(keras_plain):
    """Under a strategy Keras sums the replicas' gradients, so its own losses divide their batch mean by the replicas;
    ``keras.losses.Loss`` skips that for a ``call`` that returns a scalar, as a ported segmentation loss does. One SGD
    step of a Dense layer on two replicas: the naive scalar loss takes twice the single-process update (relative
    change 1: the update is off by itself), segparity's scaled loss and Keras's own mean squared error take it
    (tests/distributed_tf_worker.py). Slow: a fresh TensorFlow process; every default-suite Keras run under a
    strategy depends on the fix too (its weights would be off by a step)."""
    measured = keras_plain["pitfall"]
    assert measured["naive"] == pytest.approx(1.0, abs=1e-5)
    assert measured["fixed"] < 1e-6 and measured["keras"] < 1e-6


@pytest.mark.slow
def test_keras_refuses_the_instance_task_on_several_replicas(keras_plain):
    """TensorFlow 2.21 fails inside fit when the instance task trains on two replicas ("You must feed a value for
    placeholder tensor"; one replica trains): refused with that reason, before the run folder is written."""
    assert "--task instance with --framework tf --distributed on 2 replicas" in keras_plain["instance_refusal"]
    assert "--framework torch under torchrun" in keras_plain["instance_refusal"]
    assert not keras_plain["instance_folder"].exists()


# Bad launches: one clear line before any process group or strategy starts


TORCHRUN_ENV = dict(RANK="0", WORLD_SIZE="3", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")


def _train_cli(framework: str, out: Path, *extra: str) -> list[str]:
    return ["train", "--framework", framework, "--distributed", *FLAGS, "--epochs", "1", "--out", str(out), *extra]


def test_torch_without_torchrun_names_the_missing_rendezvous_variables(tmp_path, monkeypatch, capsys):
    from segparity import cli

    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    assert cli.main(_train_cli("torch", tmp_path / "run")) == 2
    error = capsys.readouterr().err
    assert "missing: WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT" in error and "torchrun" in error
    assert not (tmp_path / "run").exists()


def test_a_world_size_that_does_not_divide_the_global_batch_is_refused_before_joining(tmp_path, monkeypatch, capsys):
    """WORLD_SIZE 3 and --batch-size 8: refused before init_process_group, which would wait for the other ranks."""
    from segparity import cli

    for name, value in TORCHRUN_ENV.items():
        monkeypatch.setenv(name, value)
    assert cli.main(_train_cli("torch", tmp_path / "run")) == 2
    assert "--batch-size 8 is the global batch and must split evenly over the 3 replicas" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG needs a "cluster" object'),
    ('{"cluster": {"worker": ["host0"]}, "task": {"type": "worker", "index": 0}}', 'list of "host:port"'),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "names an address twice"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": 0}}', "cluster has ps"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "chief", "index": 0}}', "TF_CONFIG task must be"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "task.index 2 is not a worker"),
])
def test_a_mismatched_tf_config_is_refused_before_any_strategy(tmp_path, monkeypatch, capsys, text, message):
    from segparity import cli

    monkeypatch.setenv("TF_CONFIG", text)
    assert cli.main(_train_cli("tf", tmp_path / "run")) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_replica_checks():
    from segparity.training.distributed import DistributedError, check_last_batch, replica_batch, tf_config_process

    assert replica_batch(8, 2) == 4
    check_last_batch(20, 8, 2)  # a last batch of 4
    with pytest.raises(DistributedError, match="leave a last batch of 2 .* over 4 replicas"):
        check_last_batch(18, 8, 4)
    worker = tf_config_process('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}')
    assert (worker.rank, worker.world_size, worker.writes) == (1, 2, False)


def test_cpu_replicas_belong_to_a_distributed_tf_run(tmp_path, capsys, monkeypatch):
    """torch's replicas are processes; TensorFlow's CPU can no longer be split once it has started (it has, here)."""
    from segmentation_tf.distributed import start
    from segparity import cli
    from segparity.training.distributed import DistributedError

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cli.main(["train", "--framework", "tf", *FLAGS, "--cpu-replicas", "2", "--out", str(tmp_path / "a")]) == 2
    assert "--cpu-replicas 2 splits the CPU for a --distributed run" in capsys.readouterr().err
    for name, value in {**TORCHRUN_ENV, "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(_train_cli("torch", tmp_path / "b", "--cpu-replicas", "2")) == 2
    assert "torch runs one replica per process" in capsys.readouterr().err
    import tensorflow as tf

    tf.constant(0.0)  # TensorFlow has started
    with pytest.raises(DistributedError, match="has already started with 1 CPU device"):
        start("cpu", 3)


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _workers(*arguments: str) -> list[str]:
    """Start two ``MultiWorkerMirroredStrategy`` workers on this host (tests/distributed_tf_worker.py ``arguments``)
    and return their outputs, in worker order."""
    addresses = [f"localhost:{port}" for port in _free_ports(2)]
    runs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
        runs.append(subprocess.Popen([sys.executable, str(ROOT / "tests" / "distributed_tf_worker.py"), *arguments],
                                     env={**_environment(), "TF_CONFIG": tf_config}, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True))
    return [(run, _finish(run)) for run in runs]


@pytest.mark.slow
def test_pitfall_keras_fit_multi_worker(tmp_path):
    """Keras 3.15's ``fit`` cannot train under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585): two workers on
    this host running the smallest plain ``fit`` both fail inside Keras (it builds on a batch reduced over the
    workers; each step then ends in ``strategy.reduce("MEAN", scalar loss, axis=0)``). segparity's Keras trainer fits
    through ``_Replicated`` (made outside the strategy's scope, 1-element logs): two workers train the test's U-Net
    to within rtol 1e-4 / atol 1e-5 of single-process torch on every tensor, and only worker 0 writes. Slow (four
    TensorFlow processes, about 20 s): in .ci/run's slow step."""
    known = ("Attempt to convert a value (PerReplica",  # fit's first symbolic build: strategy.reduce of the batch
             "Invalid reduction dimension 0 for input with 0 dimensions")  # each step: reduce("MEAN", loss, axis=0)
    for run, output in _workers("--multi-worker"):
        assert run.returncode != 0 and any(message in output for message in known), output[-3000:]
    model, _, _ = torch_train.build_run(_config(None, 1), 3)
    init = tmp_path / "init.safetensors"
    write_checkpoint(init, to_canonical(model), model.spec)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(_config(init, 2).to_dict()))
    for run, output in _workers("--multi-worker", str(config_file), str(tmp_path / "tf")):
        assert run.returncode == 0, output[-3000:]
    torch_train.train(_config(init, 2), tmp_path / "torch", progress=False)
    comparisons = _differences(read_checkpoint(tmp_path / "tf" / "weights.safetensors")[0],
                               read_checkpoint(tmp_path / "torch" / "weights.safetensors")[0])
    assert all(c.passed for c in comparisons), _worst(comparisons)
    assert len(RunFolder(tmp_path / "tf").latest().rows) == 2
