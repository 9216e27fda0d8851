"""The training machinery every trainer shares: device and autocast, the epoch seeding
rule, the finite-loss check, the resume checkpoint, best-epoch tracking, the epoch loop,
and the run lifecycle around it.

What differs between the trainers -- data, model, loss, metric -- stays in
``core.classification.train``, ``core.temporal.train`` and
``core.classification.pretrain``; each opens its run with ``RunLifecycle`` and calls
``fit`` with a ``FitPlan`` of its own. See docs/ARCHITECTURE.md ("Training").

The run lifecycle (docs/ARCHITECTURE.md, "A run on disk", describes it once): ``setup``,
``RunLifecycle.open`` (reuse, resume or start, the folder's lock), ``fit`` with the
lifecycle's epoch writer, ``RunLifecycle.finish``.

Determinism: every epoch reseeds torch's RNG (dropout) and the batch order from
``epoch_seed(seed, epoch)``, so epoch e of a resumed run sees exactly the batches and
dropout masks of an unbroken run's epoch e.

Resume checkpoint (``last.safetensors`` in an unfinished run folder): the trainable weights
as ``model.<name>``, the optimizer's tensors as ``optim.<param id>.<name>``, and as JSON
metadata (``poselab_resume``) the epoch, optimizer hyper-parameters and scalars, scheduler
state, fit bookkeeping and history. safetensors + JSON, so resuming never unpickles
anything; the best weights live in ``weights.safetensors`` meanwhile.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from core import distributed as D
from core.errors import RunError, TrainingError
from core.run_writer import RunWriter, wait_for_live
from core.runs import WEIGHTS, RunInfo, find_run, load_weights, save_weights

RESUME_KEY = "poselab_resume"
RESUME_SCHEMA = 2


# ----------------------------------------------------------------------------- device

def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" = CUDA when there is one; asking for CUDA without one is a RunError."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(None, "--device cuda asked for, but no CUDA device is available")
    return device


def setup(device: str | torch.device = "auto", progress: bool = True) -> tuple[torch.device, bool]:
    """(this process's device, whether it shows progress): joins torchrun's process group
    when launched by it, and only rank 0 draws progress bars."""
    dev = D.init_distributed(resolve_device(device))
    return dev, progress and D.is_main_process()


def autocast(device: torch.device, enabled: bool = True, *, cpu: bool = False):
    """bf16 autocast on CUDA (no loss scaling needed). On a CPU only with ``cpu`` (and
    ``cpu_bf16()``): bf16 is slower than float32 for the small heads and temporal models,
    and pays for ResNet-50's convolutions only where the CPU computes bf16 natively."""
    if enabled and (device.type == "cuda" or (cpu and cpu_bf16())):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX, as oneDNN reports).
    Measured for a ResNet-50 training step at 112 px, batch 64: twice float32's speed on
    such a Xeon (2026-12-02); emulated on an AVX2-only AMD EPYC, 140 s against float32's
    4.5 s (2026-12-03)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


@contextlib.contextmanager
def threads(device: torch.device, n: int):
    """At most ``n`` CPU threads for torch inside the block (restored after); nothing on a
    GPU. For small ops (a classifier head on cached features, the demo's narrow temporal
    models) a second thread does not pay, and on a busy machine oversubscribed threads
    spin: a head's 10 epochs took 53 s with 2 threads and about 2 s with 1 on the shared
    2-core CPU (2026-12-03)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(min(n, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def memory_format(device: torch.device) -> torch.memory_format:
    """The faster layout for ResNet-50 on ``device``: channels_last on CUDA and on CPUs
    with AVX-512 (oneDNN's NHWC kernels: ~1.4x on an AVX-512 Xeon, 2026-11-23), contiguous
    on AVX2-only CPUs, where channels_last was 3x slower to train and 1.8x slower to run
    (AMD EPYC, 2 cores, batch 64 at 112 px, 2026-12-03)."""
    if device.type == "cuda" or torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return torch.channels_last
    return torch.contiguous_format


# ----------------------------------------------------------------------------- seeding

def epoch_seed(seed: int, epoch: int) -> int:
    """The one seeding rule: epoch ``epoch`` of a run with ``seed``."""
    return seed * 100_003 + epoch


def seed_epoch(seed: int, epoch: int, batches=None) -> None:
    """Seed torch's RNG (dropout) and the training batches' order for one epoch."""
    torch.manual_seed(epoch_seed(seed, epoch))
    if hasattr(batches, "set_epoch"):           # GlobalBatches-based; a plain DataLoader keeps its order
        batches.set_epoch(epoch)


# ----------------------------------------------------------------------------- finite loss

class FiniteLoss:
    """Stops training when the loss becomes NaN or infinite.

    On a CPU every step is checked at once (reading a scalar costs nothing there), so the
    bad step is never applied. On a GPU a flag accumulates on the device and is read every
    ``every`` steps and by ``check`` at the end of the epoch, so the GPU never waits for
    the host; a bad step may then be applied before the error, but the epoch it spoils is
    never saved (the error comes before its checkpoint)."""

    def __init__(self, device: torch.device, where: str, every: int = 50):
        self.device, self.where, self.every = device, where, every
        self.steps = 0
        self._bad = torch.zeros((), dtype=torch.bool, device=device)
        self._first = torch.zeros((), dtype=torch.float32, device=device)

    def update(self, loss: torch.Tensor) -> None:
        value = loss.detach().float()
        self.steps += 1
        if self.device.type != "cuda":
            if not math.isfinite(float(value)):
                self._raise(float(value), self.steps)
            return
        bad = ~torch.isfinite(value)
        self._first = torch.where(bad & ~self._bad, value, self._first)
        self._bad |= bad
        if self.steps % self.every == 0:
            self.check()

    def check(self) -> None:
        if self.device.type == "cuda" and bool(self._bad):
            self._raise(float(self._first), None)

    def _raise(self, value: float, step: int | None) -> None:
        at = f" at step {step}" if step is not None else ""
        raise TrainingError(f"{self.where}: loss became {value}{at} (diverged); lower --lr, "
                            "or check the data for bad values")


# ----------------------------------------------------------------------------- fit

class Scored(Protocol):
    """What ``fit`` reads of an epoch's training pass and of its evaluation."""
    loss: float
    score: float     # higher is better; the validation score picks the best epoch
    count: int       # samples scored (a non-finite validation loss over some stops training)


@dataclass
class EpochScore:
    """A plain ``Scored``: what ``train_one_epoch`` functions return."""
    loss: float
    score: float
    count: int = 1


@dataclass
class FitState:
    """Where a training stands after an epoch: all that a resume needs besides tensors."""
    epoch: int = 0                                  # last finished epoch (0 = none)
    best_epoch: int = 0
    best_score: float = -math.inf                   # validation score of best_epoch
    best_weights: dict[str, torch.Tensor] | None = None   # trainable state of best_epoch (CPU)
    since_best: int = 0                             # epochs without a new best
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)   # one row per epoch (0 = untrained)
    optimizer: dict | None = None                   # optimizer.state_dict() to continue from
    scheduler: dict | None = None                   # scheduler.state_dict() to continue from

    def improve(self, epoch: int, score: float, weights: Callable[[], dict]) -> bool:
        """Record epoch ``epoch``'s validation ``score`` (higher is better); True when it is
        the new best. ">" keeps the earliest of equal epochs; a NaN score (no validation
        data to judge by) always counts, so the last epoch is kept."""
        improved = math.isnan(score) or score > self.best_score or self.best_weights is None
        if improved:
            self.best_epoch, self.best_score = epoch, score
            self.best_weights = {k: v.detach().cpu().clone() for k, v in weights().items()}
            self.since_best = 0
        else:
            self.since_best += 1
        return improved


@dataclass
class FitPlan:
    """What ``fit`` runs: a trainer's own epoch and evaluation, its optimiser, how long."""
    optimizer: torch.optim.Optimizer
    scheduler: Any                                  # stepped once per epoch (ReduceLROnPlateau: on val loss)
    train_epoch: Callable[[int], Scored]            # epoch -> its training pass
    evaluate: Callable[[int], Scored]               # epoch -> validation (0: the untrained model)
    weights: Callable[[], dict]                     # the trainable state kept for the best epoch
    epochs: int                                     # train epochs state.epoch + 1 .. epochs
    seed: int                                       # the run's seed (epoch_seed)
    metric: str                                     # history columns train_<metric>, val_<metric>
    batches: Any = None                             # reordered per epoch (``set_epoch``)
    early_stop_patience: int | None = None          # stop after this many epochs without a new best


def step_scheduler(scheduler, val_loss: float) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    else:
        scheduler.step()


def fit(plan: FitPlan, state: FitState | None = None, *, on_epoch: Callable[[FitState, bool], None] | None = None,
        progress: bool = True) -> FitState:
    """Train epochs ``state.epoch + 1 .. plan.epochs``; the best epoch is the one with the
    highest validation score (``FitState.improve``).

    A fresh run first scores the untrained model on validation as epoch 0 (a history row
    with no training loss): it is a candidate like any epoch, so a training that only
    makes things worse keeps its starting point (the identity a residual model starts as,
    the weights it is fine-tuned from). Each epoch is seeded by ``seed_epoch``, the
    scheduler steps on the validation loss when it is a ReduceLROnPlateau, and
    ``on_epoch(state, improved)`` persists the epoch (``EpochWriter``) before the next
    begins. A non-finite validation loss over a non-empty set stops training as a
    TrainingError.
    """
    state = state or FitState()
    if state.optimizer is not None:
        plan.optimizer.load_state_dict(state.optimizer)
        plan.scheduler.load_state_dict(state.scheduler)
    todo = range(state.epoch + 1, plan.epochs + 1)
    if not state.history and len(todo):
        t0 = time.perf_counter()
        va = plan.evaluate(0)
        _check_finite(va, 0)
        state.improve(0, va.score, plan.weights)
        state.history.append(_row(plan, 0, None, va, plan.optimizer.param_groups[0]["lr"], t0))
    for epoch in tqdm(todo, desc="epochs", disable=not progress or not len(todo), leave=False):
        if plan.early_stop_patience is not None and state.since_best >= plan.early_stop_patience:
            state.stopped_early = True
            break
        t0 = time.perf_counter()
        seed_epoch(plan.seed, epoch, plan.batches)
        lr = plan.optimizer.param_groups[0]["lr"]
        tr = plan.train_epoch(epoch)
        va = plan.evaluate(epoch)
        _check_finite(va, epoch)
        step_scheduler(plan.scheduler, va.loss)
        improved = state.improve(epoch, va.score, plan.weights)
        state.epoch = epoch
        state.optimizer, state.scheduler = plan.optimizer.state_dict(), plan.scheduler.state_dict()
        state.history.append(_row(plan, epoch, tr, va, lr, t0))
        if on_epoch is not None:
            on_epoch(state, improved)
    return state


def _check_finite(va: Scored, epoch: int) -> None:
    if va.count > 0 and not math.isfinite(va.loss):
        raise TrainingError(f"epoch {epoch} validation: loss became {va.loss} (diverged); lower --lr")


def _row(plan: FitPlan, epoch: int, tr: Scored | None, va: Scored, lr: float, t0: float) -> dict[str, Any]:
    return {"epoch": epoch, "train_loss": math.nan if tr is None else float(tr.loss),
            f"train_{plan.metric}": math.nan if tr is None else float(tr.score),
            "val_loss": float(va.loss), f"val_{plan.metric}": float(va.score), "lr": lr,
            "seconds": round(time.perf_counter() - t0, 3)}


def trained_epochs(state: FitState) -> int:
    """Epochs that trained (the untrained epoch-0 row not counted)."""
    return sum(1 for r in state.history if r["epoch"] > 0)


class EpochWriter:
    """``fit``'s ``on_epoch`` for a run folder: best weights first (the checkpoint points
    at them), then the resume checkpoint, then history.csv."""

    def __init__(self, writer: RunWriter, columns: list[str], model_state: Callable[[], dict],
                 after: Callable[[FitState], None] | None = None, metadata: dict[str, str] | None = None):
        self.writer, self.columns, self.model_state = writer, columns, model_state
        self.after, self.metadata = after, metadata

    def __call__(self, state: FitState, improved: bool) -> None:
        if improved or not (self.writer.path / WEIGHTS).is_file():   # epoch 0 may be the best so far
            self.writer.write_weights(state.best_weights, self.metadata)
        save_resume(self.writer.last, self.model_state(), state)
        self.writer.write_history(state.history, self.columns)
        if self.after is not None:
            self.after(state)


# ----------------------------------------------------------------------------- the run lifecycle

class RunLifecycle:
    """One run folder from the call to its metrics (the module docstring's steps 2-4)."""

    def __init__(self, writer: RunWriter | None, reused: Path | None = None, resumed: "Resume | None" = None,
                 columns: list[str] | None = None):
        self.writer, self.reused, self.columns = writer, reused, columns or []
        self.state = resumed.state if resumed else FitState()      # where training continues
        self.resumed_model = resumed.model if resumed else None    # the resumed weights, to load

    @classmethod
    def open(cls, runs_dir: Path, info: RunInfo, columns: list[str], *,
             reuse_finished: bool = False) -> "RunLifecycle":
        """Reuse, resume or start the run of ``info`` (step 2 of the module docstring)."""
        if reuse_finished:
            done = None
            if D.is_main_process():
                wait_for_live(runs_dir, info.identity())
                done = find_run(runs_dir, info.identity(), finished=True)
            done = D.broadcast_object(done)
            if done is not None:
                if D.is_main_process():
                    print(f"{info.name}: reusing finished run {done.name}", flush=True)
                return cls(None, reused=done)
        writer = RunWriter.open(runs_dir, info)
        run = cls(writer, resumed=resume(writer), columns=columns)
        writer.write_history(run.state.history, columns)
        return run

    def __enter__(self) -> "RunLifecycle":
        return self

    def __exit__(self, *exc) -> None:
        if self.writer is not None:
            self.writer.close()

    @property
    def path(self) -> Path:
        return self.reused if self.writer is None else self.writer.path

    @property
    def info(self) -> RunInfo:
        return self.writer.info

    def epoch_writer(self, model_state: Callable[[], dict], *, after: Callable[[FitState], None] | None = None,
                     metadata: dict[str, str] | None = None) -> EpochWriter:
        return EpochWriter(self.writer, self.columns, model_state, after=after, metadata=metadata)

    def add_seconds(self, **phases: float) -> None:
        """Add wall seconds per phase to run.json (a resumed run keeps its earlier ones)."""
        have = self.writer.info.phase_seconds
        for k, v in phases.items():
            have[k] = round(have.get(k, 0.0) + v, 3)

    def finish(self, metrics: dict[str, Any]) -> Path:
        """Step 4: metrics.json last; returns the run folder (rank 0's on every rank)."""
        return self.writer.finish(metrics)


# ----------------------------------------------------------------------------- resume checkpoint

@dataclass
class Resume:
    """A resume checkpoint read back: the FitState to continue and the model's weights."""
    state: FitState
    model: dict[str, torch.Tensor]


def save_resume(path: Path, model_state: dict[str, torch.Tensor], state: FitState) -> None:
    """last.safetensors: see the module docstring."""
    tensors = {f"model.{k}": v for k, v in model_state.items()}
    scalars: dict[str, Any] = {}
    for pid, st in state.optimizer["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = v
            else:
                scalars[f"{pid}.{name}"] = v
    meta = {"schema": RESUME_SCHEMA, "epoch": state.epoch, "best_epoch": state.best_epoch,
            "best_score": state.best_score, "since_best": state.since_best,
            "optimizer": {"param_groups": state.optimizer["param_groups"], "scalars": scalars},
            "scheduler": state.scheduler, "history": state.history}
    save_weights(path, tensors, metadata={RESUME_KEY: json.dumps(meta)})


def load_resume(path: Path, best_weights: Path | None = None) -> Resume:
    """A resume checkpoint, of this schema or of the two the trainers wrote before it
    (classifier: ``best_acc`` and scalars in metadata; temporal: ``best_val_pck``,
    ``param_groups`` at the top). ``best_weights`` defaults to the run's weights file."""
    best_weights = best_weights or path.parent / WEIGHTS
    tensors = load_weights(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()[RESUME_KEY])
    except Exception as e:  # missing or garbled metadata
        raise RunError(path, f"resume checkpoint cannot be read ({e})") from None
    try:
        opt_meta = meta.get("optimizer") or {"param_groups": meta["param_groups"], "scalars": {}}
        optim: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, name = k.split(".", 2)
                optim.setdefault(int(pid), {})[name] = v
        for k, v in opt_meta.get("scalars", {}).items():
            pid, name = k.split(".", 1)
            optim.setdefault(int(pid), {})[name] = v
        best_score = meta.get("best_score", meta.get("best_acc", meta.get("best_val_pck", -math.inf)))
        state = FitState(epoch=meta["epoch"], best_epoch=meta["best_epoch"], best_score=best_score,
                         since_best=meta.get("since_best", 0), history=list(meta["history"]),
                         optimizer={"state": optim, "param_groups": opt_meta["param_groups"]},
                         scheduler=meta["scheduler"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(path, f"resume checkpoint has no usable state ({e})") from None
    if best_weights.is_file():             # the best epoch may be 0 (the untrained model)
        state.best_weights = load_weights(best_weights)
    return Resume(state=state, model={k[6:]: v for k, v in tensors.items() if k.startswith("model.")})


def resume(writer: RunWriter) -> Resume | None:
    """The resume checkpoint of a resumed run (read by rank 0, the same on every rank)."""
    if not writer.resumed:
        return None
    found = load_resume(writer.last) if D.is_main_process() else None
    found = D.broadcast_object(found)
    if D.is_main_process():
        print(f"resuming {writer.path.name} after epoch {found.state.epoch}", flush=True)
    writer.info.resumed_after_epoch.append(found.state.epoch)
    writer.write_info()
    return found
