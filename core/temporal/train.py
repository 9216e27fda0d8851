"""Training and evaluation of the temporal refinement models on ``core.engine``.

Plain functions in the torchvision-reference style:

    train_one_epoch(model, batches, optimizer, device, ...) -> engine.EpochScore
    evaluate(model, batches, device, ...)                   -> TemporalEval
    fit(model, batches, cfg, device, ...)                   -> engine.FitState

and the entry points the CLI calls: ``train_temporal_grid(job)`` runs every ``ModelPlan``
of a ``TemporalJob`` once per seed on data loaded once per seed; ``train_temporal(job)``
is the one-model, one-seed case. Each run goes through ``core.engine.RunLifecycle``
(reuse, resume, epoch checkpoints, finish: described once in docs/ARCHITECTURE.md) and writes run.json,
history.csv, predictions.parquet, pck.csv, weights.safetensors, metrics.json last.

What each model is, and its loss, comes from the registry ``core.temporal.models.ARCHS``.
Learned models train (Adam + ReduceLROnPlateau on the validation loss, early stopping,
best epoch by validation PCK@0.05, the untrained model a candidate too); the baselines
are evaluated only: identity as it is, the classical filters with the parameters that
score best on the validation split (``tune``).

PCK during training and for the headline is *pooled* (``core.metrics.pooled_pck``): every
visible keypoint weighs the same. The per-keypoint table (pck.csv) is
``core.metrics.pck_table``. metrics.json also carries what PCK cannot see: velocity and
acceleration error, jitter, PCK-AUC, the share of left/right-swapped frames and the
swap-tolerant PCK, for the run and for the identity baseline on the same windows.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from core import distributed as D
from core import engine
from core.errors import DataError, RunError
from core.keypoints import flip_permutation
from core.metrics import (
    PCK_THRESHOLDS,
    acceleration_error,
    jitter,
    pck_auc,
    pck_table,
    pooled_pck,
    swap_tolerant_pck,
    swapped_frames,
    velocity_error,
)
from core.runs import PCK_CSV, PREDICTIONS, RUN_JSON, DataInfo, RunInfo, list_runs, load_run, load_weights
from core.temporal.models import (
    ARCHS,
    BASELINES,
    LEARNED,
    build_temporal,
    config_from_dict,
    config_to_dict,
    get_arch,
    load_state,
    make_config,
)
from core.temporal.sequences import SequenceIndex, load_sequences
from core.temporal.windows import WindowBatches, make_window_datasets

# The study fine-tunes pre-trained models with lr 1e-4. Training from scratch on a small
# synthetic set with that rate needs many more epochs than the demo can afford, so a run
# without --init-from defaults to 1e-3 (both overridable with --lr).
LR_FINETUNE = 1e-4
LR_SCRATCH = 1e-3
HISTORY_COLUMNS = ["epoch", "train_loss", "train_pck", "val_loss", "val_pck", "lr", "seconds"]
ENTRIES = ("forward", "forward_train")     # the methods a temporal model trains through (DDP routes both)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30               # upper bound; early stopping usually ends sooner
    batch_size: int = 16           # the study's batch size
    lr: float | None = None        # Adam learning rate; None: LR_FINETUNE with --init-from, else LR_SCRATCH
    weight_decay: float = 0.0      # Adam weight decay
    plateau_factor: float = 0.5    # ReduceLROnPlateau: lr *= factor ...
    plateau_patience: int = 2      # ... after this many epochs without val-loss gain
    early_stop_patience: int = 6   # stop after this many epochs without val PCK@0.05 gain
    grad_clip: float = 1.0         # max grad norm; transformers (DeciWatch) need it early on
    train_stride: int = 1          # training windows overlap (every start frame); val/test never do
    amp: bool = True               # bf16 autocast, on CUDA only (CPU bf16 is slower here)


@dataclass(frozen=True)
class ModelPlan:
    """One model of a job: its arch, its config and its recipe."""
    arch: str                                  # a name of ARCHS
    model: dict[str, Any] = field(default_factory=dict)   # config overrides (an --init-from run's config wins)
    recipe: TrainConfig | None = None          # how it trains; None: default_recipe(arch). Baselines
                                               # use only batch_size and train_stride


@dataclass(frozen=True)
class TemporalJob:
    """What ``python -m core train|grid temporal`` runs: which models and seeds, on which
    sequence dataset, into which runs folder."""
    data: Path                                 # a sequence dataset (folder, index.json, .npz, Penn Action, BRACE)
    runs_dir: Path                             # receives the run folders
    plans: tuple[ModelPlan, ...] = tuple(ModelPlan(a) for a in LEARNED + BASELINES)
    seeds: tuple[int, ...] = (0,)              # seeds of the split by video, init, batch order, dropout
    device: str = "auto"                       # auto = CUDA when there is one
    init_from: Path | None = None              # fine-tune from a run (or, for a grid, a folder of runs)
    reuse_finished: bool = False               # return a finished identical run instead of training
    progress: bool = True                      # progress bars (rank 0 only)


@dataclass
class TemporalEval:
    """``evaluate``'s result over a split. Arrays (W windows, T frames, K keypoints):
    pred, gt, input (W, T, K, 2) heatmap px; visible (W, T, K); norm (W, T); video, start (W,)."""
    loss: float
    pred: np.ndarray
    gt: np.ndarray
    input: np.ndarray
    visible: np.ndarray
    norm: np.ndarray
    video: np.ndarray
    start: np.ndarray

    @property
    def count(self) -> int:
        return int(self.pred.shape[0])

    @property
    def pck(self) -> np.ndarray:
        """Pooled PCK at ``PCK_THRESHOLDS`` (A,)."""
        return pooled_pck(self.pred, self.gt, self.visible, self.norm)

    @property
    def identity_pck(self) -> np.ndarray:
        return pooled_pck(self.input, self.gt, self.visible, self.norm)

    @property
    def score(self) -> float:   # what picks the best epoch: PCK@0.05
        return float(self.pck[0])


# ----------------------------------------------------------------------------- train / eval

def _to(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def loss_terms(model: nn.Module, batch: dict):
    """(loss terms, predicted keypoints (B, T, K, 2) heatmap px) of the model's own loss
    (``core.temporal.models.losses``) for one batch on its device."""
    base = D.unwrap(model)
    return ARCHS[base.cfg.arch].loss(model, base, batch)


def train_one_epoch(model: nn.Module, batches, optimizer: torch.optim.Optimizer,
                    device: torch.device, *, amp: bool = True, grad_clip: float | None = 1.0,
                    epoch: int = 0, progress: bool = False) -> engine.EpochScore:
    """One pass over ``batches``; returns mean loss and pooled train PCK@0.05.

    Under torchrun each rank holds its share of the global batch (``WindowBatches``) and
    each loss term's count is pooled over ranks (``D.global_mean``), so the gradient is
    the single-process one. Sums stay on the device until the epoch ends.
    """
    model.train()
    finite = engine.FiniteLoss(device, f"epoch {epoch}")
    total, n, hits, scored = (torch.zeros((), device=device) for _ in range(4))
    for batch in tqdm(batches, desc=f"epoch {epoch} train", leave=False, disable=not progress):
        batch = _to(batch, device)
        with engine.autocast(device, amp):
            terms, pred = loss_terms(model, batch)
        b = float(batch.get("samples", batch["heatmaps"].shape[0]))   # 0 for a padding share
        # the terms' counts and the batch size pooled over ranks in one collective
        sums = torch.stack([w * torch.as_tensor(s, dtype=torch.float32) for w, s, _ in terms]
                           + [torch.zeros((), device=device)])
        counts = torch.stack([torch.as_tensor(c, dtype=torch.float32, device=device) for _, _, c in terms]
                             + [torch.tensor(b, device=device)])
        shares, pooled = D.global_mean(sums, counts)      # each term's share of its global mean
        loss = shares[:-1].sum()
        finite.update(loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        total += loss.detach() / D.world_size() * pooled[-1]   # the shares sum to the global mean
        n += b
        # PCK@0.05 on the fly, pooled: correct and counted pairs summed over batches
        vis = batch["visible"] & (batch["norm"][..., None] > 0)
        ok = (pred - batch["keypoints"]).norm(dim=-1) <= 0.05 * batch["norm"][..., None]
        hits += (ok & vis).sum()
        scored += vis.sum()
    finite.check()
    total, n, hits, scored = D.all_reduce_sum(total, n, hits, scored)
    return engine.EpochScore(loss=float(total / max(n, 1)), score=float(hits / scored) if scored else math.nan,
                             count=int(n))


@torch.no_grad()
def evaluate(model: nn.Module, batches, device: torch.device, *, amp: bool = True,
             progress: bool = False, desc: str = "eval") -> TemporalEval:
    """Loss, PCK and the arrays predictions.parquet is made of, over ``batches``.

    The loss pools its terms over the whole split (sum of errors / number of counted
    keypoints), so it does not depend on how the windows are batched or sharded. Under
    torchrun each rank evaluates its contiguous share and the arrays are gathered in
    rank order, i.e. in window order.
    """
    model = D.unwrap(model)
    model.eval()
    sums: torch.Tensor | None = None                    # per term: weight, sum, count
    keep: dict[str, list] = {k: [] for k in ("pred", "gt", "input", "visible", "norm", "video", "start")}
    for batch in tqdm(batches, desc=desc, leave=False, disable=not progress):
        batch = _to(batch, device)
        with engine.autocast(device, amp):
            terms, pred = loss_terms(model, batch)
        step = torch.stack([torch.stack([torch.as_tensor(w, dtype=torch.float64),
                                         torch.as_tensor(t, dtype=torch.float64).cpu(),
                                         torch.as_tensor(c, dtype=torch.float64).cpu()]) for w, t, c in terms])
        sums = step if sums is None else sums + step * torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
        keep["pred"].append(pred.float().cpu())
        keep["gt"].append(batch["keypoints"].float().cpu())
        keep["input"].append(batch["input_keypoints"].float().cpu())
        keep["visible"].append(batch["visible"].cpu())
        keep["norm"].append(batch["norm"].float().cpu())
        keep["video"].append(torch.as_tensor(batch["video"]).cpu())
        keep["start"].append(torch.as_tensor(batch["start"]).cpu())
    if sums is None:
        raise DataError(None, f"{desc}: no windows to evaluate")
    out = {k: torch.cat(v) for k, v in keep.items()}
    sums = sums.numpy()
    if getattr(batches, "sharded", False):              # every rank holds >= 1 window
        out = {k: D.all_gather_cat(v) for k, v in out.items()}
        sums[:, 1:] = np.asarray(D.all_reduce_sum(*sums[:, 1:].reshape(-1))).reshape(-1, 2)
    out = {k: v.numpy() for k, v in out.items()}
    return TemporalEval(loss=float(sum(w * t / max(c, 1) for w, t, c in sums)), **out)


def fit(model: nn.Module, batches: dict, cfg: TrainConfig, device: torch.device, *,
        seed: int = 0, progress: bool = True, state: engine.FitState | None = None,
        on_epoch: Callable[[engine.FitState, bool], None] | None = None) -> engine.FitState:
    """Adam + ReduceLROnPlateau(val loss) + early stopping; best epoch by val PCK@0.05
    (``engine.fit``, the untrained model a candidate) on ``batches["train"]`` and
    ``batches["val"]``. ``state`` continues a resumed run; ``cfg.lr`` must be resolved
    (``resolve_recipe``)."""
    train_batches, val_batches = batches["train"], batches["val"]
    base = D.unwrap(model)          # state dicts without DDP's prefixes
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    return engine.fit(engine.FitPlan(
        optimizer=optimizer, scheduler=scheduler, epochs=cfg.epochs, seed=seed, metric="pck",
        batches=train_batches, early_stop_patience=cfg.early_stop_patience, weights=base.state_dict,
        train_epoch=lambda e: train_one_epoch(model, train_batches, optimizer, device, amp=cfg.amp,
                                              grad_clip=cfg.grad_clip, epoch=e, progress=progress),
        evaluate=lambda e: evaluate(model, val_batches, device, amp=cfg.amp, desc=f"epoch {e} val")),
        state, on_epoch=on_epoch, progress=progress)


def tune(arch: str, cfg, val_batches, device: torch.device) -> tuple[Any, list[dict]]:
    """A baseline's config with the candidate parameters that score best on validation
    (PCK@0.05, then PCK@0.1 on a tie; the first of equals), and the table of every
    candidate tried. Arches without candidates come back unchanged."""
    candidates = ARCHS[arch].candidates
    if candidates is None:
        return cfg, []
    table, best, best_key = [], cfg, None
    for overrides in candidates(cfg.frames):
        trial = replace(cfg, **overrides)
        ev = evaluate(build_temporal(trial).to(device), val_batches, device, desc=f"tune {arch}")
        pck = ev.pck
        table.append({**overrides, **{f"val_pck@{a:g}": float(v) for a, v in zip(PCK_THRESHOLDS, pck)}})
        key = (float(np.nan_to_num(pck[0], nan=-1)), float(np.nan_to_num(pck[1], nan=-1)))
        if best_key is None or key > best_key:
            best, best_key = trial, key
    return best, table


# ----------------------------------------------------------------------------- data on the device

def _batches(datasets: dict, index: SequenceIndex, cfg: TrainConfig, k: int, seed: int,
             device: torch.device) -> tuple[dict, dict]:
    """split -> WindowBatches (and the datasets, rebuilt when k or the stride differ)."""
    if datasets is None or datasets["train"].k != k or datasets["train"].stride != cfg.train_stride:
        datasets = make_window_datasets(index, k=k, train_stride=cfg.train_stride)
    for split, ds in datasets.items():
        if len(ds) == 0:
            raise DataError(index.root, f"the {split} split has no window of {k} frames "
                                        f"({len(index.splits[split])} videos); add longer or more videos")
    on_device = _frames_fit_on(device, sum(ds.nbytes for ds in datasets.values()))
    for ds in datasets.values():
        if on_device and ds.device != device:
            ds.to(device)       # on a GPU the frames stay there; batches are gathered in place
    return {split: WindowBatches(ds, cfg.batch_size, shuffle=(split == "train"), seed=seed)
            for split, ds in datasets.items()}, datasets


def _frames_fit_on(device: torch.device, nbytes: int, share: float = 0.5) -> bool:
    """Whether the windows' frames (``nbytes``) may live on ``device``: on a GPU, at most
    ``share`` of its free memory (the model and activations need the rest). Otherwise
    they stay in host memory and each batch is gathered there and copied over."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    if nbytes <= share * free:
        return True
    if D.is_main_process():
        print(f"temporal data: {nbytes / 2**30:.1f} GiB of frames exceed {share:.0%} of the GPU's free "
              f"{free / 2**30:.1f} GiB; keeping them in host memory (batches are copied per step)",
              flush=True)
    return False


# ----------------------------------------------------------------------------- outputs

def predictions_frame(ev: TemporalEval, video_names: list[str], keypoint_names) -> pd.DataFrame:
    """predictions.parquet rows (contract): one per test frame x keypoint, heatmap px."""
    w, t, k, _ = ev.pred.shape
    frame = (ev.start[:, None] + np.arange(t)[None]).reshape(-1)             # (W*T,)
    video = np.asarray(video_names, dtype=object)[ev.video]                  # (W,)
    rep = lambda a: np.repeat(a, k)                                          # noqa: E731
    vis = ev.visible.reshape(-1).astype(bool)
    err = np.linalg.norm(ev.pred - ev.gt, axis=-1).reshape(-1)
    ierr = np.linalg.norm(ev.input - ev.gt, axis=-1).reshape(-1)
    df = pd.DataFrame({
        "video": rep(np.repeat(video, t)).astype(str),
        "frame": rep(frame).astype(np.int64),
        "keypoint": np.tile(np.arange(k), w * t).astype(np.int64),
        "keypoint_name": np.tile(np.asarray(keypoint_names, dtype=object), w * t).astype(str),
        "gt_x": ev.gt[..., 0].reshape(-1), "gt_y": ev.gt[..., 1].reshape(-1),
        "visible": vis,
        "input_x": ev.input[..., 0].reshape(-1), "input_y": ev.input[..., 1].reshape(-1),
        "pred_x": ev.pred[..., 0].reshape(-1), "pred_y": ev.pred[..., 1].reshape(-1),
        "norm": rep(ev.norm.reshape(-1)),
        "error_px": np.where(vis, err, np.nan),
        "input_error_px": np.where(vis, ierr, np.nan),
    })
    return df.sort_values(["video", "frame", "keypoint"], kind="stable").reset_index(drop=True)


def _flat(a: np.ndarray) -> np.ndarray:
    """(W, T, ...) -> (W*T, ...): every test frame is one PCK sample."""
    return a.reshape((-1,) + a.shape[2:])


def motion_metrics(pred: np.ndarray, ev: TemporalEval, flip: np.ndarray) -> dict[str, float]:
    """What PCK cannot see, of ``pred`` (W, T, K, 2) against ``ev``'s ground truth, over
    the same windows: velocity and acceleration error, jitter, PCK-AUC, swapped frames,
    swap-tolerant PCK (``core.metrics``; heatmap px per frame (squared))."""
    flat = (_flat(pred), _flat(ev.gt), _flat(ev.visible))
    out = {"velocity_error": velocity_error(pred, ev.gt, ev.visible),
           "accel_error": acceleration_error(pred, ev.gt, ev.visible),
           "jitter": jitter(pred),
           "pck_auc": pck_auc(*flat, _flat(ev.norm)),
           "swapped_frames": float(swapped_frames(*flat, flip)[_flat(ev.visible).any(-1)].mean())
           if ev.visible.any() else math.nan}
    tolerant = swap_tolerant_pck(*flat, _flat(ev.norm), flip)
    out.update({f"swap_tolerant_pck@{a:g}": float(v) for a, v in zip(PCK_THRESHOLDS, tolerant)})
    return out


def _metrics(val: TemporalEval, test: TemporalEval, state: engine.FitState, names) -> dict[str, Any]:
    metrics: dict[str, Any] = {"headline": "test_pck@0.05"}
    for prefix, values in (("test", test.pck), ("identity", test.identity_pck)):
        metrics.update({f"{prefix}_pck@{a:g}": float(v) for a, v in zip(PCK_THRESHOLDS, values)})
    flip = flip_permutation(tuple(names))
    for prefix, pred in (("test", test.pred), ("identity", test.input)):
        metrics.update({f"{prefix}_{k}": v for k, v in motion_metrics(pred, test, flip).items()})
    metrics["gt_jitter"] = jitter(np.where(test.visible[..., None], test.gt, np.nan))   # the true motion's
    metrics.update({
        "val_pck@0.05": val.score, "val_loss": val.loss, "test_loss": test.loss,
        "best_epoch": state.best_epoch, "epochs_run": engine.trained_epochs(state),
        "stopped_early": state.stopped_early, "num_test_windows": test.count,
        "num_test_keypoints": int((test.visible & (test.norm[..., None] > 0)).sum()),   # what PCK counts
        "num_test_frames": int(test.pred.shape[0] * test.pred.shape[1]),
    })
    return metrics


# ----------------------------------------------------------------------------- one run

@dataclass
class _Data:
    """A seed's data, loaded and windowed once for every model of a grid."""
    index: SequenceIndex
    datasets: dict | None = None


def _resolve_init(init_from: Path, arch: str):
    """The finished temporal run to fine-tune from; RunError when it does not fit ``arch``."""
    run = load_run(init_from, require_finished=True)
    if run.kind != "temporal":
        raise RunError(run.path, f"is a {run.kind} run, not a temporal one")
    if run.name != arch:
        raise RunError(run.path, f"was trained as {run.name!r}; cannot initialise a {arch!r} model")
    return run


def default_recipe(arch: str, **overrides: Any) -> TrainConfig:
    """``TrainConfig`` with the arch's own defaults (``Arch.recipe``: DeciWatch trains
    longer) and then ``overrides`` (None values skipped: "not given")."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(TrainConfig(), **{**get_arch(arch).recipe, **given})


def resolve_recipe(recipe: TrainConfig, init_run) -> TrainConfig:
    """The recipe with its learning rate settled: 1e-4 when fine-tuning, else 1e-3."""
    if recipe.lr is not None:
        return recipe
    return replace(recipe, lr=LR_FINETUNE if init_run is not None else LR_SCRATCH)


def _model_config(plan: ModelPlan, init_run, keypoints: int, root):
    """The model config: the init run's own when fine-tuning, else the arch's default with
    the plan's overrides."""
    try:
        cfg = (config_from_dict(init_run.info.config["model"]) if init_run is not None
               else make_config(plan.arch, **plan.model))
    except ValueError as e:
        raise RunError(None, f"{plan.arch}: {e}") from None
    if cfg.keypoints != keypoints:
        raise DataError(root, f"has {keypoints} keypoints; the {plan.arch} model expects {cfg.keypoints}")
    return cfg


def _run_info(arch: str, model_cfg, train_cfg: TrainConfig, index: SequenceIndex, datasets: dict, *,
              seed: int, device: torch.device, init_run) -> RunInfo:
    data = DataInfo(root=str(Path(index.root).resolve()), sources=[str(s) for s in index.sources],
                    fingerprint=index.fingerprint, keypoints=list(index.keypoints),
                    num_train=len(datasets["train"]), num_val=len(datasets["val"]),
                    num_test=len(datasets["test"]), videos={s: len(v) for s, v in index.splits.items()},
                    skipped=dict(index.skipped or {}), estimator=index.estimator,
                    heatmap_size=list(index.heatmap_size))
    return RunInfo(kind="temporal", name=arch, data=data, seed=seed, device=str(device),
                   config={"model": config_to_dict(model_cfg), "train": asdict(train_cfg)},
                   init_from=str(init_run.path) if init_run is not None else None,
                   distributed=D.describe())


def train_temporal(job: TemporalJob, on_epoch: Callable[[int, dict], None] | None = None) -> Path:
    """Train (or, for a baseline, tune and evaluate) the job's one model with its one seed;
    returns its run folder. ``on_epoch(epoch, history row)`` follows training (rank 0)."""
    if len(job.plans) != 1 or len(job.seeds) != 1:
        raise RunError(None, "train_temporal runs one model with one seed; use train_temporal_grid for more")
    dev, progress = engine.setup(job.device, job.progress)
    data = _Data(load_sequences(job.data, seed=job.seeds[0]))
    init = Path(job.init_from) if job.init_from is not None else None
    return _train_one(job, job.plans[0], job.seeds[0], data, dev, progress, init, on_epoch)


def _train_one(job: TemporalJob, plan: ModelPlan, seed: int, data: _Data, dev: torch.device, progress: bool,
               init_from: Path | None, on_epoch: Callable[[int, dict], None] | None) -> Path:
    """One run: the temporal data, model, loss and metric; the rest is the lifecycle."""
    t_start = time.perf_counter()
    arch = get_arch(plan.arch)
    init_run = _resolve_init(init_from, plan.arch) if init_from is not None and not arch.baseline else None
    model_cfg = _model_config(plan, init_run, len(data.index.keypoints), data.index.root)
    recipe = resolve_recipe(plan.recipe or default_recipe(plan.arch), init_run)
    batches, data.datasets = _batches(data.datasets, data.index, recipe, model_cfg.frames, seed, dev)
    t0 = time.perf_counter()
    model_cfg, tuning = tune(plan.arch, model_cfg, batches["val"], dev)
    tuned = time.perf_counter() - t0
    info = _run_info(plan.arch, model_cfg, recipe, data.index, data.datasets, seed=seed, device=dev,
                     init_run=init_run)
    info.phase_seconds = {"load_data": round(t0 - t_start, 3), **({"tune": round(tuned, 3)} if tuning else {})}
    with engine.RunLifecycle.open(job.runs_dir, info, HISTORY_COLUMNS, reuse_finished=job.reuse_finished) as run:
        if run.reused is not None:
            return run.reused
        torch.manual_seed(seed)
        model = build_temporal(model_cfg)
        if init_run is not None:
            load_state(model, load_weights(init_run.path / "weights.safetensors"), init_run.path)
        if run.resumed_model is not None:
            model.load_state_dict(run.resumed_model)
        model.to(dev)
        report = on_epoch if D.is_main_process() else None
        t0 = time.perf_counter()
        state = run.state
        trained = not arch.baseline and any(p.requires_grad for p in model.parameters()) and recipe.epochs > 0
        if trained:
            state = fit(D.wrap_ddp(model, dev, ENTRIES), batches, recipe, dev,
                        seed=seed, progress=progress, state=state,
                        on_epoch=run.epoch_writer(model.state_dict, metadata={"arch": plan.arch},
                                                  after=None if report is None else
                                                  (lambda st: report(st.epoch, st.history[-1]))))
            model.load_state_dict(state.best_weights)
            run.add_seconds(train=time.perf_counter() - t0)
        else:
            # a baseline (or 0 epochs): evaluated only; history holds one epoch-0 row.
            va = evaluate(model, batches["val"], dev, amp=recipe.amp, desc="val")
            state.history = [{"epoch": 0, "train_loss": math.nan, "train_pck": math.nan, "val_loss": va.loss,
                              "val_pck": va.score, "lr": math.nan, "seconds": time.perf_counter() - t0}]
            run.writer.write_history(state.history, HISTORY_COLUMNS)
            if report is not None:
                report(0, state.history[0])
            run.add_seconds(evaluate_val=time.perf_counter() - t0)
        return _finish(run, model, batches, data.index, state, recipe, dev, progress, tuning, t_start=t_start)


def _finish(run: engine.RunLifecycle, model: nn.Module, batches: dict, index: SequenceIndex,
            state: engine.FitState, cfg: TrainConfig, dev: torch.device, progress: bool, tuning: list, *,
            t_start: float) -> Path:
    """Evaluate the best weights on val and test, write predictions, pck.csv, weights,
    then finish the run (metrics.json last)."""
    t0 = time.perf_counter()
    val = evaluate(model, batches["val"], dev, amp=cfg.amp, desc="val")
    test = evaluate(model, batches["test"], dev, amp=cfg.amp, progress=progress, desc="test")
    names = list(index.keypoints)
    run.writer.write_table(PREDICTIONS, predictions_frame(test, [v.id for v in index.splits["test"]], names))
    run.writer.write_table(PCK_CSV, pck_table(_flat(test.pred), _flat(test.gt), _flat(test.visible),
                                              _flat(test.norm), identity_pred=_flat(test.input), names=names))
    run.writer.write_weights(model.state_dict(), metadata={"arch": run.info.name})
    run.add_seconds(evaluate=time.perf_counter() - t0)
    run.info.phase_seconds["total"] = round(time.perf_counter() - t_start, 3)
    metrics = _metrics(val, test, state, names)
    if tuning:
        metrics["tuning"] = tuning
    return run.finish(metrics)


# ----------------------------------------------------------------------------- grid

def _grid_init(init_from, arch: str):
    """Grid --init-from: a run folder (used for its own arch) or a folder of runs (the
    newest finished temporal run of each arch). None when nothing fits ``arch``."""
    if init_from is None or ARCHS[arch].baseline:
        return None
    init_from = Path(init_from)
    if (init_from / RUN_JSON).exists():
        run = load_run(init_from, require_finished=True)
        return run.path if run.name == arch else None
    for run in list_runs(init_from, kind="temporal"):
        if run.finished and run.name == arch:
            return run.path
    raise RunError(init_from, f"holds no finished {arch!r} run to fine-tune from")


def train_temporal_grid(job: TemporalJob, *, on_run: Callable[[int, int, str], None] | None = None,
                        on_epoch: Callable[[str, int, dict], None] | None = None) -> list[Path]:
    """Every plan of ``job`` once per seed (the identity baseline always among them), the
    data loaded and windowed once per seed. ``on_run(i, n, arch)`` is called before each
    run and ``on_epoch(arch, epoch, row)`` after each epoch (the demo's progress)."""
    plans = list(job.plans)
    for plan in plans:
        get_arch(plan.arch)
    if not any(p.arch == "identity" for p in plans):
        plans.append(ModelPlan("identity"))
    dev, progress = engine.setup(job.device, job.progress)
    paths, n = [], len(plans) * len(job.seeds)
    for seed in job.seeds:
        data = _Data(load_sequences(job.data, seed=seed))
        for plan in plans:
            if on_run:
                on_run(len(paths), n, plan.arch)
            paths.append(_train_one(job, plan, seed, data, dev, progress, _grid_init(job.init_from, plan.arch),
                                    (lambda e, row, a=plan.arch: on_epoch(a, e, row)) if on_epoch else None))
    return paths
