"""Data-parallel training under ``torchrun``: which process this is, and the few collectives the trainers need.

``torchrun --nproc_per_node N -m histosynth train ...`` starts N copies of the command with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` (plus the rendezvous address) in their environment. :func:`init` reads them,
joins the process group (NCCL when the device is CUDA, gloo otherwise) and returns the :class:`World`; outside
torchrun (no ``WORLD_SIZE``, or 1) it is a one-process world whose helpers do nothing, so the trainers have a
single code path.

The semantics the trainers keep, so that N processes train what one process would:

* ``train.batch_size`` stays the *global* batch. Every rank draws the same seeded shuffle and takes its slice
  (:meth:`World.part`) of each global batch: the union of the ranks' batches is the one-process batch.
* Gradients are averaged over the ranks before every optimiser step with one explicit all-reduce
  (:meth:`World.average_gradients`), not by wrapping the nets in ``DistributedDataParallel``: a GAN step runs
  G and D forward and backward in alternation, with D frozen during G's update and D reused in a gradient
  penalty, which DDP's reducer (one all-reduce per forward-backward of the wrapped module, hooks fired by
  which parameters got gradients) does not follow; an explicit reduce at the step is exact for any such
  pattern (stylegan2-ada-pytorch does the same). The nets start identical (broadcast from rank 0), so they
  stay identical.
* Logged losses are the mean over ranks (:meth:`World.mean`): every rank sees the same numbers, so a
  divergence check stops all ranks at the same step.
* Batch-norm: with CUDA the nets' ``BatchNorm`` layers become ``SyncBatchNorm`` (statistics over the global
  batch, as one process computes them). PyTorch's SyncBatchNorm runs on GPUs only, so on CPU each rank
  normalises with its own slice's statistics (the running statistics used for sampling are rank 0's).
* Only rank 0 talks to the outside (MLflow, checkpoints, samples, the pushgateway, bundles); checkpoints hold
  the global step and the shared data order, so a run resumes with another number of processes.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from histosynth.defaults import ENV_DIST_BACKEND as ENV_BACKEND
from histosynth.device import resolve_device
from histosynth.errors import ConfigError

BACKENDS = ("auto", "nccl", "gloo")


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer", "launch with torchrun, which sets RANK, WORLD_SIZE and LOCAL_RANK") from None


def env_world(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside it."""
    env = os.environ if env is None else env
    size = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local = _env_int(env, "LOCAL_RANK", rank)
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ConfigError(f"RANK={rank} WORLD_SIZE={size} LOCAL_RANK={local} is not a valid process group", "launch with torchrun (it sets these), or unset them for one process")
    return rank, size, local


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` data-parallel processes (a one-process world by default)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, checkpoints and writes outputs."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def part(self, batch_size: int, setting: str = "train.batch_size") -> slice:
        """This rank's slice of a global batch of ``batch_size`` (which must split evenly over the ranks)."""
        if batch_size % self.size:
            raise ConfigError(
                f"{setting}={batch_size} does not split over {self.size} processes (it is the global batch)",
                f"use a multiple of {self.size} (e.g. {setting}={max(self.size, batch_size - batch_size % self.size)}) or another --nproc_per_node",
            )
        local = batch_size // self.size
        return slice(self.rank * local, (self.rank + 1) * local)

    def noise_seed(self, seed: int, step: int) -> int | None:
        """The seed of this rank's noise stream (z, augmentation) from ``step`` on, or None for rank 0, which keeps
        the one-process stream. Ranks > 0 must not draw the same z as rank 0: that would repeat fakes."""
        if self.rank == 0:
            return None
        return (int(seed) * 1_000_003 + self.rank * 7_919 + int(step)) % (2**63)

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()

    @torch.no_grad()
    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the ranks (one flat all-reduce). Every rank must pass the same
        parameters with gradients, in the same order (the same model and step code guarantee it)."""
        if not self.parallel:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(self.size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    @torch.no_grad()
    def mean(self, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scalar metric tensors averaged over the ranks (one all-reduce); the same dict outside torchrun."""
        if not self.parallel or not metrics:
            return metrics
        keys = sorted(metrics)
        stacked = torch.stack([metrics[k].detach().float().reshape(()) for k in keys])
        dist.all_reduce(stacked)
        stacked.div_(self.size)
        return dict(zip(keys, stacked.unbind()))

    @torch.no_grad()
    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the ranks (in place)."""
        if self.parallel:
            dist.all_reduce(values)
        return values

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a picklable object: a result, a run id)."""
        if not self.parallel:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @torch.no_grad()
    def prepare(self, *models: torch.nn.Module) -> None:
        """Make the nets data-parallel: rank 0's parameters and buffers everywhere, and on CUDA ``SyncBatchNorm``
        in place of ``BatchNorm`` (converted in place: parameters, optimisers and buffers stay the same objects)."""
        if not self.parallel:
            return
        for model in models:
            for t in [*model.parameters(), *model.buffers()]:
                dist.broadcast(t.data, src=0)
            if next(model.parameters()).device.type == "cuda":
                torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # swaps the BN children; the root is no BN


_current = World()


def current() -> World:
    """The world :func:`init` joined (a one-process world before, or outside torchrun)."""
    return _current


def backend_for(device: torch.device, env: Mapping[str, str] | None = None) -> str:
    """nccl for CUDA, gloo for CPU, unless ``HISTOSYNTH_DIST_BACKEND`` says otherwise (and fits the device)."""
    env = os.environ if env is None else env
    asked = (env.get(ENV_BACKEND) or "auto").strip().lower()
    if asked not in BACKENDS:
        raise ConfigError(f"{ENV_BACKEND}={asked!r} is not a backend", f"use one of {', '.join(BACKENDS)}")
    if asked == "nccl" and device.type != "cuda":
        raise ConfigError(f"{ENV_BACKEND}=nccl but the training device is {device} (NCCL needs CUDA GPUs)", f"unset {ENV_BACKEND} (gloo on CPU) or train on GPUs (train.device=cuda)")
    if asked == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    return asked


def init(device_name: str = "auto", setting: str = "train.device", env: Mapping[str, str] | None = None) -> tuple[World, torch.device]:
    """Join torchrun's process group (once per process) -> (world, this rank's device).

    Outside torchrun: the one-process world and ``resolve_device(device_name)``. Under it, a CUDA device is
    ``cuda:LOCAL_RANK`` (one GPU per process), so ``device_name`` may say ``cuda`` or ``auto`` but not another index.
    """
    global _current
    rank, size, local = env_world(env)
    device = resolve_device(device_name, setting)
    if size == 1:
        _current = World()
        return _current, device
    if device.type == "cuda":
        if device.index not in (None, local):
            raise ConfigError(f"{setting}={device_name} under torchrun: each process trains on cuda:LOCAL_RANK", f"use {setting}=cuda (or auto)")
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} GPU(s) are visible", "start at most one process per GPU (torchrun --nproc_per_node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = backend_for(device, env)
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=size, **({"device_id": device} if backend == "nccl" else {}))
        atexit.register(_leave)
    elif dist.get_world_size() != size or dist.get_rank() != rank:
        raise ConfigError(f"a process group of {dist.get_world_size()} is already open, torchrun says {size}", "run one training per torchrun launch")
    _current = World(rank, size, local)
    return _current, device


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
