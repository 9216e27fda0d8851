"""Training and evaluation of the temporal refinement models on ``core.engine.fit``.

Plain functions in the torchvision-reference style:

    train_one_epoch(model, batches, optimizer, device, ...) -> {"loss", "pck"}
    evaluate(model, batches, device, ...)                   -> {"loss", "pck", "count", arrays...}
    fit(model, train_batches, val_batches, cfg, device, ...) -> engine.FitState

and the two entry points the CLI calls, ``train_temporal`` and ``train_temporal_grid``,
which write run folders through ``core.runs.RunWriter`` (run.json, history.csv,
predictions.parquet, pck.csv, weights.safetensors, metrics.json last).

Losses: heatmap models (Conv3D, bi-ConvLSTM) regress the ground-truth Gaussian heatmaps
with MSE; DeciWatch uses its own two masked L1 terms (``deciwatch_loss_terms``). Every loss
is masked by ``visible`` (ground truth exists for that frame and keypoint, which is False
for joints a dataset lacks), so missing joints are never trained towards zero. Under
torchrun each term's denominator is pooled over ranks (``core.distributed.global_mean``).

PCK during training and for the headline is *pooled* (``core.metrics.pooled_pck``): every
visible keypoint weighs the same. The per-keypoint table (pck.csv) is
``core.metrics.pck_table``. Optimiser: Adam + ReduceLROnPlateau on the validation loss,
early stopping; best epoch by validation PCK@0.05.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
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
from core.metrics import PCK_THRESHOLDS, pck_table, pooled_pck
from core.runs import (
    PCK_CSV,
    PREDICTIONS,
    RUN_JSON,
    DataInfo,
    RunInfo,
    RunWriter,
    find_run,
    list_runs,
    load_run,
    load_weights,
)
from core.temporal.ddp import wrap_ddp
from core.temporal.heatmaps import decode_heatmaps
from core.temporal.models import (
    TRAINABLE_ARCHS,
    Identity,
    TemporalConfig,
    build_temporal,
    config_from_dict,
    config_to_dict,
    deciwatch_loss_terms,
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


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30               # upper bound; early stopping usually ends sooner
    batch_size: int = 16           # the study's batch size
    lr: float = LR_SCRATCH         # Adam learning rate (see LR_FINETUNE / LR_SCRATCH)
    weight_decay: float = 0.0      # Adam weight decay
    plateau_factor: float = 0.5    # ReduceLROnPlateau: lr *= factor ...
    plateau_patience: int = 2      # ... after this many epochs without val-loss gain
    early_stop_patience: int = 6   # stop after this many epochs without val PCK@0.05 gain
    grad_clip: float = 1.0         # max grad norm; transformers (DeciWatch) need it early on
    train_stride: int = 1          # training windows overlap (every start frame); val/test never do
    amp: bool = True               # bf16 autocast, on CUDA only (CPU bf16 is slower here)


# ----------------------------------------------------------------------------- losses

def _to(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


LossTerms = list  # [(weight, sum, count)]: loss = sum of weight * sum / max(count, 1)


def loss_terms(model: nn.Module, batch: dict) -> tuple[LossTerms, torch.Tensor]:
    """(the loss as (weight, sum, count) terms, predicted keypoints (B, T, K, 2) in heatmap
    px) for one batch on its device. Heatmap models: one term, the squared error summed
    over counted maps (mean over pixels) and their count; DeciWatch: its two L1 terms.

    Terms rather than a loss so that the denominators can be pooled: over all ranks in a
    distributed step, over all batches in ``evaluate``.
    """
    x = batch["heatmaps"]                                         # (B, T, K, H, W)
    mask = batch["visible"]                                       # (B, T, K) bool
    size = tuple(x.shape[-2:])
    base = D.unwrap(model)
    if base.output_kind == "coords":
        denoised, recovered = model.forward_train(x)              # normalised coords
        terms = deciwatch_loss_terms(base, denoised.float(), recovered.float(), batch["keypoints"],
                                     mask, size)
        return terms, base.denormalise(recovered.detach().float(), size)
    out = model(x).float()                                        # (B, T, K, H, W)
    per_map = (out - batch["target"]).pow(2).mean(dim=(-2, -1))   # (B, T, K)
    m = mask.float()
    terms = [(1.0, (per_map * m).sum(), m.sum())]
    if isinstance(base, Identity):
        # The dataset decoded the estimator's peaks from float32 maps; the windows carry
        # float16 copies. Using its locations keeps the identity run exactly equal to
        # every run's identity_pck columns.
        return terms, batch["input_keypoints"].float()
    pred, _ = decode_heatmaps(out)                                # (B, T, K, 2), no grad
    return terms, pred


def combine_terms(terms: LossTerms) -> torch.Tensor:
    """sum of weight * sum / max(count, 1)."""
    return sum(w * total / torch.as_tensor(c).clamp(min=1) for w, total, c in terms)


def compute_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, predicted keypoints (B, T, K, 2) in heatmap px) for one batch on its device."""
    terms, pred = loss_terms(model, batch)
    return combine_terms(terms), pred


# ----------------------------------------------------------------------------- train / eval

def train_one_epoch(model: nn.Module, batches, optimizer: torch.optim.Optimizer,
                    device: torch.device, *, amp: bool = True, grad_clip: float | None = 1.0,
                    epoch: int = 0, progress: bool = False) -> dict[str, float]:
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
    return {"loss": total / max(n, 1), "pck": hits / scored if scored else math.nan}


@torch.no_grad()
def evaluate(model: nn.Module, batches, device: torch.device, *, amp: bool = True,
             progress: bool = False, desc: str = "eval") -> dict[str, Any]:
    """Loss and PCK over ``batches``, plus the arrays predictions.parquet is made of.

    The loss pools its terms over the whole split (sum of errors / number of counted
    keypoints), so it does not depend on how the windows are batched or sharded. Under
    torchrun each rank evaluates its contiguous share and the arrays are gathered in
    rank order, i.e. in window order.

    Returned arrays (W = windows, T frames, K keypoints): pred, gt, input (W, T, K, 2),
    visible (W, T, K), norm (W, T), video, start (W,).
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
    out["loss"] = float(sum(w * t / max(c, 1) for w, t, c in sums))
    out["count"] = int(out["pred"].shape[0])
    out["pck_all"] = pooled_pck(out["pred"], out["gt"], out["visible"], out["norm"])
    out["identity_pck_all"] = pooled_pck(out["input"], out["gt"], out["visible"], out["norm"])
    out["pck"] = float(out["pck_all"][0])
    return out


def fit(model: nn.Module, train_batches, val_batches, cfg: TrainConfig, device: torch.device, *,
        seed: int = 0, progress: bool = True, state: engine.FitState | None = None,
        on_epoch: Callable[[engine.FitState, bool], None] | None = None) -> engine.FitState:
    """Adam + ReduceLROnPlateau(val loss) + early stopping; best epoch by val PCK@0.05
    (``engine.fit``). ``state`` continues a resumed run."""
    base = D.unwrap(model)          # state dicts without DDP's prefixes
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    return engine.fit(
        optimizer=optimizer, scheduler=scheduler, epochs=cfg.epochs, seed=seed, metric="pck",
        batches=train_batches, state=state, early_stop_patience=cfg.early_stop_patience,
        progress=progress, on_epoch=on_epoch, weights=base.state_dict,
        train_epoch=lambda e: train_one_epoch(model, train_batches, optimizer, device, amp=cfg.amp,
                                              grad_clip=cfg.grad_clip, epoch=e, progress=progress),
        evaluate=lambda e: evaluate(model, val_batches, device, amp=cfg.amp, desc=f"epoch {e} val"))


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

def predictions_frame(ev: dict[str, Any], video_names: list[str], keypoint_names) -> pd.DataFrame:
    """predictions.parquet rows (contract): one per test frame x keypoint, heatmap px."""
    w, t, k, _ = ev["pred"].shape
    frame = (ev["start"][:, None] + np.arange(t)[None]).reshape(-1)          # (W*T,)
    video = np.asarray(video_names, dtype=object)[ev["video"]]                # (W,)
    rep = lambda a: np.repeat(a, k)                                          # noqa: E731
    vis = ev["visible"].reshape(-1).astype(bool)
    err = np.linalg.norm(ev["pred"] - ev["gt"], axis=-1).reshape(-1)
    ierr = np.linalg.norm(ev["input"] - ev["gt"], axis=-1).reshape(-1)
    df = pd.DataFrame({
        "video": rep(np.repeat(video, t)).astype(str),
        "frame": rep(frame).astype(np.int64),
        "keypoint": np.tile(np.arange(k), w * t).astype(np.int64),
        "keypoint_name": np.tile(np.asarray(keypoint_names, dtype=object), w * t).astype(str),
        "gt_x": ev["gt"][..., 0].reshape(-1), "gt_y": ev["gt"][..., 1].reshape(-1),
        "visible": vis,
        "input_x": ev["input"][..., 0].reshape(-1), "input_y": ev["input"][..., 1].reshape(-1),
        "pred_x": ev["pred"][..., 0].reshape(-1), "pred_y": ev["pred"][..., 1].reshape(-1),
        "norm": rep(ev["norm"].reshape(-1)),
        "error_px": np.where(vis, err, np.nan),
        "input_error_px": np.where(vis, ierr, np.nan),
    })
    return df.sort_values(["video", "frame", "keypoint"], kind="stable").reset_index(drop=True)


def _flat(a: np.ndarray) -> np.ndarray:
    """(W, T, ...) -> (W*T, ...): every test frame is one PCK sample."""
    return a.reshape((-1,) + a.shape[2:])


def _metrics(val: dict, test: dict, state: engine.FitState, trained: bool) -> dict[str, Any]:
    metrics: dict[str, Any] = {"headline": "test_pck@0.05"}
    for i, a in enumerate(PCK_THRESHOLDS):
        metrics[f"test_pck@{a:g}"] = float(test["pck_all"][i])
    for i, a in enumerate(PCK_THRESHOLDS):
        metrics[f"identity_pck@{a:g}"] = float(test["identity_pck_all"][i])
    metrics.update({
        "val_pck@0.05": val["pck"], "val_loss": val["loss"], "test_loss": test["loss"],
        "best_epoch": state.best_epoch, "epochs_run": len(state.history) if trained else 0,
        "stopped_early": state.stopped_early, "num_test_windows": int(test["pred"].shape[0]),
        "num_test_frames": int(test["pred"].shape[0] * test["pred"].shape[1]),
    })
    return metrics


# ----------------------------------------------------------------------------- one run

def _resolve_init(init_from: Path, arch: str):
    """The finished temporal run to fine-tune from; RunError when it does not fit ``arch``."""
    run = load_run(init_from, require_finished=True)
    if run.kind != "temporal":
        raise RunError(run.path, f"is a {run.kind} run, not a temporal one")
    if run.name != arch:
        raise RunError(run.path, f"was trained as {run.name!r}; cannot initialise a {arch!r} model")
    return run


def _configs(arch: str, init_run, *, epochs, batch_size, lr, model_overrides, train_overrides,
             keypoints: int, root) -> tuple[TemporalConfig, TrainConfig]:
    """The model config (the init run's own when fine-tuning) and the training config."""
    model_cfg = (config_from_dict(init_run.info.config["model"]) if init_run is not None
                 else make_config(arch, **(model_overrides or {})))
    if model_cfg.keypoints != keypoints:
        raise DataError(root, f"has {keypoints} keypoints; the {arch} model expects {model_cfg.keypoints}")
    overrides = dict(train_overrides or {})
    known = {f.name for f in fields(TrainConfig)}
    if set(overrides) - known:
        raise ValueError(f"TrainConfig has no field(s) {sorted(set(overrides) - known)}")
    overrides.setdefault("lr", LR_FINETUNE if init_run is not None else LR_SCRATCH)
    given = dict(epochs=epochs, batch_size=batch_size, lr=lr)
    overrides.update({k: v for k, v in given.items() if v is not None})
    return model_cfg, replace(TrainConfig(), **overrides)


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


def train_temporal(*, data, arch: str, runs_dir, epochs: int | None = None, device: str = "auto",
                   seed: int = 0, batch_size: int | None = None, lr: float | None = None,
                   init_from=None, progress: bool = True, index: SequenceIndex | None = None,
                   model_overrides: dict[str, Any] | None = None,
                   train_overrides: dict[str, Any] | None = None,
                   on_epoch: Callable[[int, dict], None] | None = None,
                   datasets: dict | None = None, reuse_finished: bool = False) -> Path:
    """Train (or, for ``identity``, only evaluate) one model; returns its run folder.

    ``index`` / ``datasets`` let the grid load and window the data once;
    ``model_overrides`` / ``train_overrides`` change config fields (the demo uses them for
    small, fast models); ``on_epoch(epoch, history row)`` follows training (rank 0);
    ``reuse_finished`` returns a finished run of the identical call instead of training.
    """
    # The call's steps in the order they happen (data, configs, run folder, training or
    # evaluation only, the outputs in _finish); each is a line or two, kept in one place.
    t_start = time.perf_counter()
    dev = D.init_distributed(engine.resolve_device(device))   # torchrun: this rank's device
    progress = progress and D.is_main_process()                 # one set of progress bars
    index = index if index is not None else load_sequences(data, seed=seed)
    phases = {"load_data": time.perf_counter() - t_start}
    init_run = _resolve_init(Path(init_from), arch) if init_from is not None and arch != "identity" else None
    model_cfg, train_cfg = _configs(arch, init_run, epochs=epochs, batch_size=batch_size, lr=lr,
                                    model_overrides=model_overrides, train_overrides=train_overrides,
                                    keypoints=len(index.keypoints), root=index.root)
    batches, datasets = _batches(datasets, index, train_cfg, model_cfg.frames, seed, dev)
    info = _run_info(arch, model_cfg, train_cfg, index, datasets, seed=seed, device=dev, init_run=init_run)
    if reuse_finished:
        done = D.broadcast_object(find_run(runs_dir, info.identity(), finished=True)
                                  if D.is_main_process() else None)
        if done is not None:
            return done

    torch.manual_seed(seed)
    model = build_temporal(model_cfg)
    if init_run is not None:
        load_state(model, load_weights(init_run.path / "weights.safetensors"), init_run.path)
    model.to(dev)
    info.phase_seconds = phases
    writer = RunWriter.open(runs_dir, info)
    resumed = engine.resume(writer)
    state = resumed.state if resumed else engine.FitState()
    if resumed:
        model.load_state_dict(resumed.model)
    report = on_epoch if D.is_main_process() else None

    t0 = time.perf_counter()
    trained = any(p.requires_grad for p in model.parameters()) and train_cfg.epochs > 0
    if trained:
        state = fit(wrap_ddp(model, dev), batches["train"], batches["val"], train_cfg, dev, seed=seed,
                    progress=progress, state=state,
                    on_epoch=engine.EpochWriter(writer, HISTORY_COLUMNS, model.state_dict,
                                                after=None if report is None else
                                                (lambda st: report(st.epoch, st.history[-1])),
                                                metadata={"arch": arch}))
        model.load_state_dict(state.best_weights)
        phases["train"] = time.perf_counter() - t0
    else:
        # identity (or 0 epochs): evaluated only; history holds one epoch-0 row.
        va = evaluate(model, batches["val"], dev, amp=train_cfg.amp, desc="val")
        state.history = [{"epoch": 0, "train_loss": math.nan, "train_pck": math.nan, "val_loss": va["loss"],
                          "val_pck": va["pck"], "lr": math.nan, "seconds": time.perf_counter() - t0}]
        writer.write_history(state.history, HISTORY_COLUMNS)
        if report is not None:
            report(0, state.history[0])
        phases["evaluate_val"] = time.perf_counter() - t0

    return _finish(writer, model, batches, index, state, trained, train_cfg, dev, progress, phases,
                   t_start=t_start)


def _finish(writer: RunWriter, model: nn.Module, batches: dict, index: SequenceIndex, state: engine.FitState,
            trained: bool, cfg: TrainConfig, dev: torch.device, progress: bool, phases: dict, *,
            t_start: float) -> Path:
    """Evaluate the best weights on val and test, write predictions, pck.csv, weights,
    then finish the run (metrics.json last)."""
    t0 = time.perf_counter()
    val = evaluate(model, batches["val"], dev, amp=cfg.amp, desc="val")
    test = evaluate(model, batches["test"], dev, amp=cfg.amp, progress=progress, desc="test")
    phases["evaluate"] = time.perf_counter() - t0
    names = list(index.keypoints)
    writer.write_table(PREDICTIONS, predictions_frame(test, [v.id for v in index.splits["test"]], names))
    writer.write_table(PCK_CSV, pck_table(_flat(test["pred"]), _flat(test["gt"]), _flat(test["visible"]),
                                          _flat(test["norm"]), identity_pred=_flat(test["input"]), names=names))
    writer.write_weights(model.state_dict(), metadata={"arch": writer.info.name})
    writer.info.phase_seconds = {**writer.info.phase_seconds, **phases, "total": time.perf_counter() - t_start}
    return writer.finish(_metrics(val, test, state, trained))


# ----------------------------------------------------------------------------- grid

def _grid_init(init_from, arch: str):
    """Grid --init-from: a run folder (used for its own arch) or a folder of runs (the
    newest finished temporal run of each arch). None when nothing fits ``arch``."""
    if init_from is None or arch == "identity":
        return None
    init_from = Path(init_from)
    if (init_from / RUN_JSON).exists():
        run = load_run(init_from, require_finished=True)
        return run.path if run.name == arch else None
    for run in list_runs(init_from, kind="temporal"):
        if run.finished and run.name == arch:
            return run.path
    raise RunError(init_from, f"holds no finished {arch!r} run to fine-tune from")


def train_temporal_grid(*, data, archs: list[str] | None = None, runs_dir, epochs: int | None = None,
                        device: str = "auto", seed: int = 0, batch_size: int | None = None,
                        lr: float | None = None, init_from=None, progress: bool = True,
                        model_overrides: dict[str, dict] | None = None,
                        train_overrides: dict[str, Any] | None = None,
                        on_run: Callable[[int, int, str], None] | None = None,
                        on_epoch: Callable[[str, int, dict], None] | None = None) -> list[Path]:
    """The four trainable models (or ``archs``) plus the identity baseline, data loaded once.

    ``model_overrides`` maps arch -> config overrides. ``on_run(i, n, arch)`` is called
    before each run and ``on_epoch(arch, epoch, row)`` after each epoch (demo progress).
    """
    archs = list(archs) if archs else list(TRAINABLE_ARCHS)
    for a in archs:
        if a not in TRAINABLE_ARCHS and a != "identity":
            raise DataError(None, f"unknown temporal arch {a!r}; choose from "
                                  f"{', '.join(TRAINABLE_ARCHS)}, identity")
    if "identity" not in archs:
        archs.append("identity")
    index = load_sequences(data, seed=seed)
    datasets = make_window_datasets(index, train_stride=(train_overrides or {}).get(
        "train_stride", TrainConfig.train_stride))
    paths = []
    for i, arch in enumerate(archs):
        if on_run:
            on_run(i, len(archs), arch)
        paths.append(train_temporal(
            data=data, arch=arch, runs_dir=runs_dir, epochs=epochs, device=device, seed=seed,
            batch_size=batch_size, lr=lr, init_from=_grid_init(init_from, arch), progress=progress,
            index=index, model_overrides=(model_overrides or {}).get(arch),
            train_overrides=train_overrides, datasets=datasets,
            on_epoch=(lambda e, row, a=arch: on_epoch(a, e, row)) if on_epoch else None))
    return paths
