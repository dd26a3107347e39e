"""Distributed training, framework-neutrally: who this process is, and whether the run can be split.

``segparity train --distributed`` runs under each framework's own engine: ``torchrun`` (torch
``DistributedDataParallel``, ``segmentation_torch/distributed.py``) or ``tf.distribute`` (``MirroredStrategy``
on one host, ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``, ``segmentation_tf/distributed.py``). Both
keep ``batch_size`` as the *global* batch: each of the ``world_size`` replicas takes ``batch_size /
world_size`` samples of every batch that a single process would take, gradients are averaged over the
replicas, and the learning rate is that of the single-process run. With a loss that is a mean over pixels
(BCE, cross-entropy, focal) and synchronised BatchNorm, a distributed step is then the single-process step on
the global batch, up to float32 summation order (tests/test_distributed.py). Dice, Jaccard, Tversky and
Lovasz losses are not means of per-sample terms: each replica computes them on its own part of the batch.

Everything here is checked before any process group or strategy starts, so a bad launch fails at once with
a message naming the variable or number at fault.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping

# torchrun sets these for every process it starts (torch.distributed's env:// rendezvous)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(ValueError):
    """A distributed launch that cannot work as configured; the message names what is wrong."""


@dataclass(frozen=True)
class Process:
    """This process's place in a distributed run: ``rank`` of ``world_size`` processes, ``local_rank`` on
    its host (the GPU it drives)."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def writes(self) -> bool:
        """Whether this process writes the run folder (rank 0 only: checkpoints, metrics, plots)."""
        return self.rank == 0


def torchrun_process(environ: Mapping[str, str]) -> Process:
    """This process as ``torchrun`` describes it in ``environ``; a ``DistributedError`` naming every missing
    or malformed variable otherwise (``segparity train --distributed`` run without ``torchrun``)."""
    missing = [name for name in TORCHRUN_VARIABLES if not environ.get(name)]
    if missing:
        raise DistributedError(
            f"--distributed with --framework torch needs the rendezvous variables torchrun sets; missing: "
            f"{', '.join(missing)}. Launch it as `torchrun --nproc_per_node N -m segparity train --framework torch "
            f"--distributed ...` (README: multi-GPU and multi-node)")
    numbers = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        try:
            numbers[name] = int(environ[name])
        except ValueError:
            raise DistributedError(f"rendezvous variable {name}={environ[name]!r} is not an integer") from None
    if numbers["WORLD_SIZE"] < 1 or not 0 <= numbers["RANK"] < numbers["WORLD_SIZE"] or numbers["LOCAL_RANK"] < 0:
        raise DistributedError(f"rendezvous variables RANK={numbers['RANK']}, WORLD_SIZE={numbers['WORLD_SIZE']}, "
                               f"LOCAL_RANK={numbers['LOCAL_RANK']}: RANK must be in [0, WORLD_SIZE)")
    return Process(numbers["RANK"], numbers["WORLD_SIZE"], numbers["LOCAL_RANK"])


def tf_config_process(text: str) -> Process:
    """This worker as the ``TF_CONFIG`` JSON ``text`` describes it (``MultiWorkerMirroredStrategy``):
    ``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}``; a
    ``DistributedError`` naming the field at fault otherwise."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise DistributedError(f"TF_CONFIG is not JSON: {error}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise DistributedError('TF_CONFIG needs a "cluster" object, e.g. {"cluster": {"worker": ["host0:port", '
                               '"host1:port"]}, "task": {"type": "worker", "index": 0}}')
    cluster, task = config["cluster"], config.get("task")
    workers = cluster.get("worker")
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise DistributedError(f'TF_CONFIG cluster.worker must be a list of "host:port" addresses, got {workers!r}')
    others = sorted(set(cluster) - {"worker"})
    if others:
        raise DistributedError(f"TF_CONFIG cluster has {', '.join(others)}: MultiWorkerMirroredStrategy takes workers "
                               f"only (worker 0 is the chief)")
    if len(set(workers)) != len(workers):
        raise DistributedError(f"TF_CONFIG cluster.worker names an address twice: {workers}")
    if not isinstance(task, dict) or task.get("type") != "worker":
        raise DistributedError(f'TF_CONFIG task must be {{"type": "worker", "index": i}}, got {task!r}')
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(workers):
        raise DistributedError(f"TF_CONFIG task.index {index!r} is not a worker of the cluster's {len(workers)} "
                               f"(0..{len(workers) - 1})")
    return Process(index, len(workers), 0)


def replica_batch(batch_size: int, replicas: int) -> int:
    """Each replica's share of the global ``batch_size``; a ``DistributedError`` unless ``replicas`` divides it."""
    if batch_size % replicas:
        raise DistributedError(f"--batch-size {batch_size} is the global batch and must split evenly over the "
                               f"{replicas} replicas; use a multiple of {replicas}")
    return batch_size // replicas


def check_last_batch(train_samples: int, batch_size: int, replicas: int) -> None:
    """The epoch's last, shorter batch must split evenly over the replicas too (so that averaging the replicas'
    gradients is the mean over that batch); a ``DistributedError`` naming the numbers otherwise."""
    last = train_samples % batch_size
    if last % replicas:
        raise DistributedError(
            f"the {train_samples} training samples leave a last batch of {last} (global batch {batch_size}), which "
            f"does not split evenly over {replicas} replicas; choose a --batch-size or --split whose last batch is a "
            f"multiple of {replicas} (or that divides {train_samples})")
