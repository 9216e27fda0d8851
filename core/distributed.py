"""Multi-GPU / multi-node training through PyTorch's own engine (``torchrun``).

    torchrun --nproc_per_node N -m core grid classifier --data DIR
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 -m core train classifier ...
    torchrun --nproc_per_node N -m core grid temporal --data DIR

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR/PORT); ``init_distributed``
reads them and joins the process group (NCCL on CUDA, gloo on CPU). Without those
variables every helper here is a no-op, so single-process code paths call them freely.

What "equal to the single-process run up to float noise" requires, and how it is met:

* The same global batches. ``ShardedBatchSampler`` draws the single-process
  permutation (``torch.randperm`` from the same generator a ``DataLoader(shuffle=True,
  generator=g)`` uses, seeded the same way) and cuts it into the same global batches of
  ``batch_size``; rank r takes its contiguous slice of each global batch. So the global
  batch equals the single-process batch and the per-rank batch is batch_size / world.
* The same gradient. DDP averages gradients over ranks, which equals the global-batch
  mean only when every rank holds the same number of samples. The last global batch of an
  epoch is usually short and splits unevenly, so ``wrap_ddp`` installs a comm hook that
  averages weighted by each rank's sample count: sum_r n_r * g_r / sum_r n_r = the
  single-process mean gradient, for every batch. The temporal losses are masked means
  (sum over counted keypoints / their count), so there the weight would be the count,
  not the sample count: the temporal trainer instead all-reduces each loss term's count
  and divides each rank's sum by the global count times the world size, and DDP's plain
  average (``DDPTemporal``) then gives the single-process gradient.
* The same random numbers. Dropout draws its mask per rank for the rank's rows, so
  presets with dropout (model5, model6) are equal in distribution, not bit for bit; the
  presets without (baseline, model1-4) match to float noise. (Colour-jitter augmentation,
  when used, is likewise per worker.) A global batch smaller than the world size (a
  remainder of fewer samples than ranks) gives the empty ranks one repeated sample, with
  its weight counted: avoid it with batch sizes where len(train) % batch_size is 0 or
  >= world size.
* Reductions in a different order (all-reduce sums, sharded feature passes) differ from
  the single process by float rounding only (~1e-7 relative).

Only rank 0 writes run folders and caches; other ranks compute the same things and keep
them in memory (or in a private scratch folder that is removed at exit).
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

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


# ----------------------------------------------------------------------------- data

class ShardedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """This rank's part of the single-process global batches (see the module docstring).

    ``shuffle`` draws ``torch.randperm(n, generator=generator)`` exactly as
    ``RandomSampler`` does, so reseeding the generator per epoch (as ``core.classification.train.fit``
    does) reproduces the single-process order. Every rank yields the same number of
    batches (DDP needs every rank in every step).
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                 rank_: int | None = None, world: int | None = None):
        self.n, self.batch_size, self.shuffle, self.generator = n, batch_size, shuffle, generator
        self.rank = rank() if rank_ is None else rank_
        self.world = world_size() if world is None else world
        if 0 < n % batch_size < self.world and self.rank == 0:
            print(f"warning: the last batch of each epoch holds {n % batch_size} sample(s) for "
                  f"{self.world} ranks; ranks without one repeat a sample, so this run differs "
                  f"slightly from a single-process one (choose another --batch-size)", flush=True)

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        order = (torch.randperm(self.n, generator=self.generator) if self.shuffle
                 else torch.arange(self.n)).tolist()
        for start in range(0, self.n, self.batch_size):
            batch = order[start:start + self.batch_size]
            lo, hi = shard_range(len(batch), self.rank, self.world)
            yield batch[lo:hi] if hi > lo else batch[:1]      # empty share: see module doc


def sharded_loader(dataset, *, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
                   num_workers: int = 0, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over this rank's share of the single-process batches of ``batch_size``
    (the global batch). ``loader.generator`` is ``generator`` (``fit`` reseeds it)."""
    sampler = ShardedBatchSampler(len(dataset), batch_size, shuffle=shuffle, generator=generator)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, generator=generator,
                                       num_workers=num_workers, pin_memory=pin_memory)


def distributed_loader(dataset, *, batch_size: int, shuffle: bool, seed: int = 0, num_workers: int = 0,
                       pin_memory: bool = False, drop_last: bool = False) -> torch.utils.data.DataLoader:
    """The usual DistributedSampler loader (per-rank ``batch_size``), for passes whose
    order does not matter (e.g. sharded inference); call ``loader.sampler.set_epoch(e)``
    per epoch when shuffling. Training uses ``sharded_loader`` (same global batches as
    one process)."""
    from torch.utils.data.distributed import DistributedSampler
    sampler = DistributedSampler(dataset, num_replicas=world_size(), rank=rank(), shuffle=shuffle,
                                 seed=seed, drop_last=drop_last)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                       num_workers=num_workers, pin_memory=pin_memory)


# ----------------------------------------------------------------------------- model

@dataclass
class _HookState:
    local_batch: int = 0          # samples this rank put through the last training forward


def _weighted_mean_hook(state, bucket):
    """All-reduce sum_r n_r * g_r and sum_r n_r in one message; return their ratio.
    (No annotations: DDP checks them literally and this module's are strings.)"""
    g = bucket.buffer()
    n = float(state.local_batch)
    packed = torch.cat([g * n, g.new_full((1,), n)])      # new_full: no blocking host copy
    fut = dist.all_reduce(packed, async_op=True).get_future()

    def finish(f):
        out = f.value()[0]
        return out[:-1] / out[-1]
    return fut.then(finish)


class _Dispatch(nn.Module):
    """Routes DDP's single ``forward`` to the classifier's forward / forward_head, so the
    cached-feature path (head only) also goes through DDP's gradient sync."""

    def __init__(self, model: nn.Module, state: _HookState):
        super().__init__()
        self.model = model
        self._state = state

    def forward(self, head: bool, x: torch.Tensor, keypoints: torch.Tensor | None) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            # Training-only wrapper (never cached or shared): the comm hook needs this
            # step's local sample count to weight the gradient average.
            self._state.local_batch = x.shape[0]
        return self.model.forward_head(x, keypoints) if head else self.model(x, keypoints)


class DDPClassifier(nn.parallel.DistributedDataParallel):
    """DDP over a PoseClassifier with the classifier's own interface (``cfg``,
    ``forward_head``, ``forward``, ``trainable_state_dict``), so train_one_epoch /
    evaluate / fit take it unchanged. Frozen parameters are not synchronised (DDP skips
    parameters without grad)."""

    def __init__(self, model: nn.Module, device: torch.device):
        state = _HookState()
        super().__init__(_Dispatch(model, state),
                         device_ids=[device] if device.type == "cuda" else None,
                         forward_sync_buffers=False)  # BN buffers of a frozen backbone never change
        self.register_comm_hook(state, _weighted_mean_hook)

    @property
    def cfg(self):
        return self.module.model.cfg

    @property
    def classifier(self) -> nn.Module:
        return self.module.model

    def forward_head(self, features: torch.Tensor, keypoints: torch.Tensor | None = None) -> torch.Tensor:
        return self(True, features, keypoints)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.module.model.forward_features(images)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.model.trainable_state_dict()

    def forward(self, *args, **kwargs):       # PoseClassifier's call: model(images, keypoints)
        if args and isinstance(args[0], bool):
            return super().forward(*args, **kwargs)
        images = args[0] if args else kwargs["images"]
        kp = args[1] if len(args) > 1 else kwargs.get("keypoints")
        return super().forward(False, images, kp)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in DDPClassifier when distributed, else ``model`` itself."""
    if not is_distributed() or not any(p.requires_grad for p in model.parameters()):
        return model
    return DDPClassifier(model, device)


class _TemporalDispatch(nn.Module):
    """Routes DDP's single ``forward`` to a temporal model's ``forward`` or
    ``forward_train`` (DeciWatch's training entry), so both sync gradients."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, train_entry: bool, x: torch.Tensor):
        return self.model.forward_train(x) if train_entry else self.model(x)


class DDPTemporal(nn.parallel.DistributedDataParallel):
    """DDP over a temporal model (Conv3D, DeciWatch, bi-ConvLSTM) with the model's call
    interface (``model(x)``, ``model.forward_train(x)``). Gradients are plainly averaged:
    the trainer divides each rank's loss sums by the *global* counts (times the world
    size), so the average is the single-process gradient whatever each rank holds."""

    def __init__(self, model: nn.Module, device: torch.device):
        super().__init__(_TemporalDispatch(model),
                         device_ids=[device] if device.type == "cuda" else None,
                         forward_sync_buffers=False)   # only constant buffers (positions, interp)

    @property
    def inner(self) -> nn.Module:
        return self.module.model

    def forward_train(self, x: torch.Tensor):
        return super().forward(True, x)

    def forward(self, *args, **kwargs):
        if args and isinstance(args[0], bool):
            return super().forward(*args, **kwargs)
        return super().forward(False, args[0] if args else kwargs["x"])


def wrap_ddp_temporal(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DDPTemporal when distributed and trainable, else ``model`` itself."""
    if not is_distributed() or not any(p.requires_grad for p in model.parameters()):
        return model
    return DDPTemporal(model, device)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DDPClassifier / DDPTemporal (or ``model`` itself)."""
    if isinstance(model, DDPClassifier):
        return model.classifier
    if isinstance(model, DDPTemporal):
        return model.inner
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


__all__: Sequence[str] = [
    "init_distributed", "cleanup", "is_distributed", "rank", "world_size", "is_main_process",
    "barrier", "main_process_first", "broadcast_object", "all_reduce_sum", "all_gather_cat",
    "all_reduce_detached", "shard_range", "ShardedBatchSampler", "sharded_loader", "distributed_loader",
    "DDPClassifier", "wrap_ddp", "DDPTemporal", "wrap_ddp_temporal", "unwrap", "scratch_dir",
    "remove_scratch", "describe",
]
