"""Multi-GPU / multi-node training through PyTorch's own engine (``torchrun``).

    torchrun --nproc_per_node N -m core grid classifier --data DIR
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 -m core train classifier ...
    torchrun --nproc_per_node N -m core grid temporal --data DIR

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR/PORT); ``init_distributed``
reads them and joins the process group (NCCL on CUDA, gloo on CPU). Without those
variables every helper here is a no-op, so single-process code paths call them freely.

What "equal to the single-process run up to float noise" requires, and how both tasks
meet it with the same two rules:

* The same global batches. ``GlobalBatches`` draws the single-process order (a seeded
  permutation per epoch) and cuts it into the same global batches of ``batch_size``;
  rank r takes its contiguous slice of each (``shard_range``). A rank whose slice is
  empty (a last batch smaller than the world) gets one index marked as padding: DDP needs
  every rank in every step, and padding weighs nothing.
* The same gradient. Every loss is a sum over counted items (samples, or visible
  keypoints) divided by their count. ``global_mean`` divides each rank's sum by the count
  summed over ranks (one small all-reduce per step) and multiplies by the world size, so
  DDP's plain gradient average is exactly the single-process mean gradient, whatever each
  rank holds. The one DDP wrapper (``wrap_ddp``) only routes a model's entry methods
  through DDP's single ``forward``; no comm hook is needed.
* The same random numbers. Dropout draws its mask per rank for the rank's rows, so
  models with dropout (model5, model6, DeciWatch) are equal in distribution, not bit for
  bit; the others match to float noise.
* Reductions in a different order (all-reduce sums, sharded feature passes) differ from
  the single process by float rounding only (~1e-7 relative).

Only rank 0 writes run folders and caches; other ranks compute the same things and write
into a private scratch folder that is removed at exit (``core.runs.RunWriter``).
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

# ----------------------------------------------------------------------------- process group

def env_world_size() -> int:
    """WORLD_SIZE as torchrun set it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; return this rank's device.

    ``device`` is what the user asked for (already resolved): on CUDA each rank takes
    ``cuda:LOCAL_RANK``; the backend is NCCL on CUDA, gloo otherwise. Idempotent.
    """
    if env_world_size() <= 1:
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Ranks wait at barriers while rank 0 builds the image cache or calibrates a
        # backbone (minutes on a 60k-image dataset): NCCL's 10-minute default is too short.
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None,
                                timeout=datetime.timedelta(seconds=float(os.environ.get(
                                    "POSELAB_DIST_TIMEOUT_S", 2 * 3600))))
        atexit.register(cleanup)
    return device


def cleanup() -> None:
    """Leave the process group (registered at exit by ``init_distributed``)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a cache), the others wait and then run it
    (and find the cache built)."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


# ----------------------------------------------------------------------------- collectives

def _comm_device() -> torch.device:
    # NCCL only moves CUDA tensors; gloo moves CPU ones.
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (pickled between our own ranks only)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def all_reduce_sum(*values: float) -> tuple[float, ...]:
    """Sum scalars over ranks (float64, one collective)."""
    if not is_distributed():
        return tuple(float(v) for v in values)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return tuple(t.cpu().tolist())


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``t`` along dim 0, in rank order; the ranks' lengths may
    differ (other dims must match). Returns a CPU tensor when ``t`` is on the CPU."""
    if not is_distributed():
        return t
    dev = _comm_device()
    n = torch.tensor([t.shape[0]], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    m = max(sizes)
    padded = torch.zeros((m, *t.shape[1:]), dtype=t.dtype, device=dev)   # all_gather needs equal shapes
    padded[: t.shape[0]] = t.to(dev)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]).to(t.device)


def all_reduce_detached(t: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a (small) tensor, detached, on ``t``'s device; ``t`` itself
    when not distributed. Used for the global denominators of the temporal losses."""
    if not is_distributed():
        return t.detach()
    out = t.detach().to(_comm_device(), copy=True)
    dist.all_reduce(out)
    return out.to(t.device)


def shard_range(n: int, r: int | None = None, w: int | None = None) -> tuple[int, int]:
    """[lo, hi) of rank r's contiguous share of n items (sizes differ by at most one), so
    concatenating the shards in rank order gives back the original order."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    base, extra = divmod(n, w)
    lo = r * base + min(r, extra)
    return lo, lo + base + (1 if r < extra else 0)


# ----------------------------------------------------------------------------- batches

class GlobalBatches:
    """Index batches over ``n`` items, the same global batches in every process.

    ``shuffle=True`` (training): a permutation seeded per epoch (``set_epoch``; the seed
    is ``seed * 100_003 + epoch``, the engine's rule) cut into global batches of
    ``batch_size``; under torchrun rank r yields its contiguous slice of each, or one
    index marked as padding when its slice is empty. ``shuffle=False`` (evaluation): in
    order; under torchrun each rank takes a contiguous share of all ``n`` (``sharded``),
    to be gathered in rank order -- with fewer items than ranks every rank takes them all.

    Iterating yields ``(indices (B,) int64 numpy, padding bool)``.
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, seed: int = 0,
                 rank_: int | None = None, world: int | None = None):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank = rank() if rank_ is None else rank_
        self.world = world_size() if world is None else world
        self.sharded = self.world > 1 and not shuffle and n >= self.world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _share(self) -> tuple[int, int]:
        return shard_range(self.n, self.rank, self.world) if self.sharded else (0, self.n)

    def __len__(self) -> int:
        lo, hi = (0, self.n) if self.shuffle else self._share()
        return math.ceil((hi - lo) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, bool]]:
        if not self.shuffle:
            lo, hi = self._share()
            for a in range(lo, hi, self.batch_size):
                yield np.arange(a, min(a + self.batch_size, hi)), False
            return
        order = np.random.default_rng(self.seed * 100_003 + self.epoch).permutation(self.n)
        for a in range(0, self.n, self.batch_size):
            batch = order[a:a + self.batch_size]
            lo, hi = shard_range(len(batch), self.rank, self.world)
            yield (batch[lo:hi], False) if hi > lo else (batch[:1], True)


def global_mean(total: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(this rank's share of ``total / count`` over all ranks' items, the count over all
    ranks). The share is scaled so that DDP's gradient *average* is the single-process
    gradient (module docstring); in one process it is ``total / max(count, 1)``. Tensors
    of any (equal) shape: several terms' counts go in one collective."""
    counted = all_reduce_detached(count.float())
    return total * world_size() / counted.clamp(min=1), counted


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DDP wrapper (``.module.model`` of the tasks' wrappers), or
    ``model`` itself."""
    while isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module.model
    return model


# ----------------------------------------------------------------------------- files

_scratch: list[Path] = []


def scratch_dir() -> Path:
    """A private folder for a non-main rank's would-be writes, removed at exit."""
    d = Path(tempfile.mkdtemp(prefix=f"poselab-rank{rank()}-"))
    _scratch.append(d)
    atexit.register(shutil.rmtree, d, True)
    return d


def remove_scratch() -> None:
    while _scratch:
        shutil.rmtree(_scratch.pop(), ignore_errors=True)


def describe() -> dict:
    """For run.json: how this run was launched."""
    return {"world_size": world_size(), "backend": dist.get_backend() if is_distributed() else None}


# ----------------------------------------------------------------------------- DDP

class _Entries(nn.Module):
    """DDP's single entry, routed to one of the model's methods by name."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, entry: str, *args):
        return getattr(self.model, entry)(*args)


class DDPModel(nn.parallel.DistributedDataParallel):
    """DistributedDataParallel over a model that trains through several methods (the
    classifier's ``forward`` and ``forward_head``, DeciWatch's ``forward_train``): each
    named entry goes through DDP's ``forward``, so every one of them synchronises
    gradients. Anything else (config, state dicts) is read from ``unwrap(model)``."""

    def __init__(self, model: nn.Module, device: torch.device, entries: tuple[str, ...]):
        # buffers are constants or frozen BatchNorm statistics: nothing to broadcast per step
        super().__init__(_Entries(model), device_ids=[device] if device.type == "cuda" else None,
                         forward_sync_buffers=False)
        self.entries = entries

    def __getattr__(self, name: str):
        if name != "entries" and name in self.__dict__.get("entries", ()):
            return lambda *args: nn.parallel.DistributedDataParallel.forward(self, name, *args)
        return super().__getattr__(name)

    def forward(self, *args):
        return super().forward("forward", *args)


def wrap_ddp(model: nn.Module, device: torch.device, entries: tuple[str, ...] = ("forward",)) -> nn.Module:
    """``model`` in ``DDPModel`` under torchrun when it trains anything, else itself."""
    if not is_distributed() or not any(p.requires_grad for p in model.parameters()):
        return model
    return DDPModel(model, device, entries)
