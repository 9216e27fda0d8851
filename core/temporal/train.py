"""Training and evaluation of the temporal refinement models (DESIGN.md §6, issue 4).

Plain functions in the torchvision-reference style:

    train_one_epoch(model, loader, optimizer, device, ...) -> {"loss", "pck"}
    evaluate(model, loader, device, ...)                   -> {"loss", "pck", arrays...}
    fit(model, train_loader, val_loader, cfg, device, ...) -> FitResult

and the two entry points the CLI calls, ``train_temporal`` and ``train_temporal_grid``,
which write run folders in the format of DESIGN.md §4 (run.json, history.csv,
predictions.parquet, pck.csv, weights.safetensors, metrics.json last).

Losses: heatmap models (Conv3D, bi-ConvLSTM) regress the ground-truth Gaussian heatmaps
with MSE; DeciWatch uses its own two masked L1 terms (``deciwatch_loss``). Every loss is
masked by ``visible`` (ground truth exists for that frame and keypoint, which is False
for joints a dataset lacks), so missing joints are never trained towards zero.

Under torchrun (``core.distributed``) the model is wrapped in DDP, every rank trains on
its slice of the single-process global batches and the loss terms' counts are pooled over
ranks, so a run equals the single-process one up to float noise (DeciWatch's dropout
aside); rank 0 alone writes the run folder.

PCK during training and for the headline is *pooled*: the fraction of all counted
(frame, keypoint) pairs, i.e. every visible keypoint weighs the same. The per-keypoint
table (pck.csv) is ``core.metrics.pck_table``.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from core import distributed as D
from core.errors import DataError, RunError, TrainingError
from core.temporal.heatmaps import decode_heatmaps
from core.temporal.windows import WindowBatches, make_window_datasets
from core.metrics import PCK_THRESHOLDS, pck, pck_table
from core.temporal.models import (TRAINABLE_ARCHS, Identity, build_temporal, config_from_dict,
                                  config_to_dict, deciwatch_loss_terms, load_state, make_config)

# The study fine-tunes pre-trained models with lr 1e-4 (DESIGN.md §6). Training from
# scratch on a small synthetic set with that rate needs many more epochs than the demo
# can afford, so a run without --init-from defaults to 1e-3 (both overridable with --lr).
LR_FINETUNE = 1e-4
LR_SCRATCH = 1e-3


@dataclass
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


# ----------------------------------------------------------------------------- helpers

def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RunError(None, "--device cuda was asked for but no CUDA device is available")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _autocast(device: torch.device, amp: bool):
    enabled = amp and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


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


def combine_terms(terms: LossTerms, counts: list | None = None) -> torch.Tensor:
    """sum of weight * sum / max(count, 1); ``counts`` replaces the terms' own counts
    (e.g. the counts of all ranks)."""
    counts = counts if counts is not None else [c for _, _, c in terms]
    return sum(w * total / torch.as_tensor(c).clamp(min=1) for (w, total, _), c in zip(terms, counts))


def compute_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, predicted keypoints (B, T, K, 2) in heatmap px) for one batch on its device."""
    terms, pred = loss_terms(model, batch)
    return combine_terms(terms), pred


def _pooled_pck(pred, gt, visible, norm, thresholds=PCK_THRESHOLDS) -> np.ndarray:
    """PCK over all counted (frame, keypoint) pairs, every pair weighing the same.

    pred, gt (..., K, 2), visible (..., K), norm (...,) -> (A,): the pairs are treated
    as one keypoint column of ``core.metrics.pck``.
    """
    norm = np.broadcast_to(np.asarray(norm, np.float64)[..., None], visible.shape)
    return pck(pred.reshape(-1, 1, 2), gt.reshape(-1, 1, 2), visible.reshape(-1, 1),
               norm.reshape(-1, 1), thresholds)[:, 0]


def _check_finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(f"{where}: loss became {loss.item()} (diverged); try a lower --lr")


# ----------------------------------------------------------------------------- train / eval

def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer,
                    device: torch.device, *, amp: bool = True, grad_clip: float | None = 1.0,
                    epoch: int = 0, progress: bool = False) -> dict[str, float]:
    """One pass over ``loader``; returns mean loss and pooled train PCK@0.05.

    Under torchrun each rank holds its share of the global batch (``WindowBatches``):
    the loss terms' counts are summed over ranks (one small all-reduce per step), each
    rank's sums are divided by those global counts, and the loss is scaled by the world
    size because DDP averages gradients; the result is the single-process gradient.
    """
    from tqdm.auto import tqdm
    model.train()
    world = D.world_size()
    total, n, hits, counted = 0.0, 0.0, 0.0, 0.0
    for batch in tqdm(loader, desc=f"epoch {epoch} train", leave=False, disable=not progress):
        batch = _to(batch, device)
        with _autocast(device, amp):
            terms, pred = loss_terms(model, batch)
        b = float(batch.get("samples", batch["heatmaps"].shape[0]))   # 0 for a padding share
        counts = torch.stack([torch.as_tensor(c, dtype=torch.float32, device=device) for _, _, c in terms]
                             + [torch.tensor(b, device=device)])
        counts = D.all_reduce_detached(counts)                     # no-op in one process
        loss = combine_terms(terms, list(counts[:-1]))             # this rank's share of the loss
        _check_finite(loss, f"epoch {epoch}")
        optimizer.zero_grad(set_to_none=True)
        (loss * world).backward()                                  # DDP divides by world
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        global_b = float(counts[-1])
        total, n = total + loss.item() * global_b, n + b           # shares sum to the global loss
        # PCK@0.05 on the fly, pooled: correct and counted pairs summed over batches
        vis = batch["visible"] & (batch["norm"][..., None] > 0)
        ok = (pred - batch["keypoints"]).norm(dim=-1) <= 0.05 * batch["norm"][..., None]
        hits += (ok & vis).sum().item()
        counted += vis.sum().item()
    total, n, hits, counted = D.all_reduce_sum(total, n, hits, counted)
    return {"loss": total / max(n, 1), "pck": hits / counted if counted else math.nan}


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, *, amp: bool = True,
             progress: bool = False, desc: str = "eval") -> dict[str, Any]:
    """Loss and PCK over ``loader``, plus the arrays predictions.parquet is made of.

    The loss pools its terms over the whole split (sum of errors / number of counted
    keypoints), so it does not depend on how the windows are batched or sharded. Under
    torchrun each rank evaluates its contiguous share and the arrays are gathered in
    rank order, i.e. in window order.

    Returned arrays (W = windows, T frames, K keypoints): pred, gt, input (W, T, K, 2),
    visible (W, T, K), norm (W, T), video, start (W,).
    """
    from tqdm.auto import tqdm
    model = D.unwrap(model)
    model.eval()
    sums: np.ndarray | None = None                      # per term: weight, sum, count
    keep: dict[str, list] = {k: [] for k in ("pred", "gt", "input", "visible", "norm", "video", "start")}
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        batch = _to(batch, device)
        with _autocast(device, amp):
            terms, pred = loss_terms(model, batch)
        step = np.array([[w, float(t), float(c)] for w, t, c in terms], dtype=np.float64)
        sums = step if sums is None else sums + step * [0, 1, 1]
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
    if getattr(loader, "sharded", False):               # every rank holds >= 1 window
        out = {k: D.all_gather_cat(v) for k, v in out.items()}
        sums[:, 1:] = np.asarray(D.all_reduce_sum(*sums[:, 1:].reshape(-1))).reshape(-1, 2)
    out = {k: v.numpy() for k, v in out.items()}
    out["loss"] = float(sum(w * t / max(c, 1) for w, t, c in sums))
    out["pck_all"] = _pooled_pck(out["pred"], out["gt"], out["visible"], out["norm"])
    out["identity_pck_all"] = _pooled_pck(out["input"], out["gt"], out["visible"], out["norm"])
    out["pck"] = float(out["pck_all"][0])
    return out


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    best_epoch: int = 0
    best_val_pck: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None              # CPU copy of the best weights
    stopped_early: bool = False
    since_best: int = 0                                             # epochs without a new best


def fit(model: nn.Module, train_loader, val_loader, cfg: TrainConfig, device: torch.device, *,
        seed: int = 0, progress: bool = True,
        on_epoch: Callable[[int, dict], None] | None = None,
        checkpoint: Callable[[int, FitResult, dict, bool], None] | None = None,
        resume: dict | None = None) -> FitResult:
    """Adam + ReduceLROnPlateau(val loss) + early stopping; best epoch by val PCK@0.05.

    ``on_epoch(epoch, row)`` is called after every epoch (history.csv, progress lines);
    ``checkpoint(epoch, result, state, improved)`` gets the resume state (model,
    optimizer and scheduler state dicts) to persist. ``resume`` = such a state plus
    ``epoch`` and a ``result`` continues after that epoch. Every epoch reseeds the RNGs
    from (seed, epoch), so a resumed run sees the batches and dropout of an unbroken one.
    """
    from tqdm.auto import tqdm
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    result, first = FitResult(), 1
    base = D.unwrap(model)          # state dicts without DDP's prefixes
    if resume is not None:
        base.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        result, first = resume["result"], resume["epoch"] + 1
    for epoch in tqdm(range(first, cfg.epochs + 1), desc="epochs", disable=not progress):
        if result.since_best >= cfg.early_stop_patience:
            result.stopped_early = True
            break
        t0 = time.perf_counter()
        torch.manual_seed(seed * 100_003 + epoch)                 # dropout (DeciWatch)
        if hasattr(train_loader, "set_epoch"):                    # shuffling order
            train_loader.set_epoch(epoch)
        elif getattr(train_loader, "generator", None) is not None:  # a torch DataLoader
            train_loader.generator.manual_seed(seed * 100_003 + epoch)
        lr = optimizer.param_groups[0]["lr"]
        tr = train_one_epoch(model, train_loader, optimizer, device, amp=cfg.amp,
                             grad_clip=cfg.grad_clip, epoch=epoch, progress=progress)
        va = evaluate(model, val_loader, device, amp=cfg.amp, desc=f"epoch {epoch} val")
        _check_finite(torch.tensor(va["loss"]), f"epoch {epoch} validation")
        scheduler.step(va["loss"])
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_pck": tr["pck"],
               "val_loss": va["loss"], "val_pck": va["pck"], "lr": lr,
               "seconds": time.perf_counter() - t0}
        result.history.append(row)
        # ">" keeps the earliest of equal epochs; NaN PCK (no visible val joint) never wins
        improved = va["pck"] > result.best_val_pck or result.best_state is None
        if improved:
            result.best_epoch, result.best_val_pck = epoch, va["pck"]
            result.best_state = {k: v.detach().cpu().clone() for k, v in base.state_dict().items()}
            result.since_best = 0
        else:
            result.since_best += 1
        if checkpoint:  # persist first: a kill during on_epoch loses nothing
            checkpoint(epoch, result, {"model": base.state_dict(), "optimizer": optimizer.state_dict(),
                                       "scheduler": scheduler.state_dict()}, improved)
        if on_epoch:
            on_epoch(epoch, row)
    return result


# ----------------------------------------------------------------------------- resume checkpoint
# last.safetensors in an unfinished run folder: model weights ("model.*"), the Adam
# moments ("optim.<param>.<name>") and, as JSON metadata, the epoch, the scheduler and
# optimizer hyper-parameters and the fit bookkeeping. safetensors, so resuming never
# unpickles anything; the best weights live in weights.safetensors meanwhile.
LAST = "last.safetensors"


def save_checkpoint(path: Path, epoch: int, result: FitResult, state: dict) -> None:
    from core.runs import save_weights
    tensors = {f"model.{k}": v for k, v in state["model"].items()}
    opt = state["optimizer"]
    for pid, st in opt["state"].items():
        for name, v in st.items():
            tensors[f"optim.{pid}.{name}"] = torch.as_tensor(v)
    meta = {"epoch": epoch, "param_groups": opt["param_groups"], "scheduler": state["scheduler"],
            "best_epoch": result.best_epoch, "best_val_pck": result.best_val_pck,
            "since_best": result.since_best, "history": result.history}
    save_weights(path, tensors, metadata={"poselab_resume": json.dumps(meta)})


def load_checkpoint(path: Path, best_weights: Path) -> dict:
    """The ``resume`` argument of ``fit`` from a run's last.safetensors + weights.safetensors."""
    from safetensors import safe_open
    from core.runs import load_weights
    tensors = load_weights(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["poselab_resume"])
    except Exception as e:  # missing/garbled metadata
        raise RunError(path, f"resume checkpoint cannot be read ({e})") from None
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    result = FitResult(history=meta["history"], best_epoch=meta["best_epoch"],
                       best_val_pck=meta["best_val_pck"], since_best=meta["since_best"],
                       best_state=load_weights(best_weights))
    return {"epoch": meta["epoch"], "result": result, "scheduler": meta["scheduler"],
            "model": {k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
            "optimizer": {"state": state, "param_groups": meta["param_groups"]}}


# ----------------------------------------------------------------------------- run folders





def _loaders(index, cfg: TrainConfig, k: int, seed: int, device: torch.device,
             datasets: dict | None = None):
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
    return {split: WindowBatches(ds, cfg.batch_size, shuffle=(split == "train"), seed=seed,
                                 rank=D.rank(), world=D.world_size())
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


def predictions_frame(ev: dict[str, Any], video_names: list[str], keypoint_names):
    """predictions.parquet rows (contract): one per test frame x keypoint, heatmap px."""
    import pandas as pd
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


def _data_info(index, datasets) -> dict[str, Any]:
    return {
        "root": str(Path(index.root).resolve()),
        "sources": [str(s) for s in getattr(index, "sources", [])],
        "fingerprint": getattr(index, "fingerprint", None),
        "keypoints": list(index.keypoints),
        "num_train": len(datasets["train"]), "num_val": len(datasets["val"]),
        "num_test": len(datasets["test"]),
        "videos": {s: len(v) for s, v in index.splits.items()},
        "skipped": dict(getattr(index, "skipped", {}) or {}),
    }


def _resolve_init(init_from: Path, arch: str) -> tuple[Any, Path]:
    """The finished temporal run to fine-tune from; RunError when it does not fit ``arch``."""
    from core.runs import load_run
    run = load_run(init_from, require_finished=True)
    if run.kind != "temporal":
        raise RunError(run.path, f"is a {run.kind} run, not a temporal one")
    if run.name != arch:
        raise RunError(run.path, f"was trained as {run.name!r}; cannot initialise a {arch!r} model")
    return run, run.path


def train_temporal(*, data, arch: str, runs_dir, epochs: int | None = None, device: str = "auto",
                   seed: int = 0, batch_size: int | None = None, lr: float | None = None,
                   init_from=None, progress: bool = True, index=None,
                   model_overrides: dict[str, Any] | None = None,
                   train_overrides: dict[str, Any] | None = None,
                   on_epoch: Callable[[int, dict], None] | None = None,
                   datasets: dict | None = None) -> Path:
    """Train (or, for ``identity``, only evaluate) one model; returns its run folder.

    ``index`` lets the grid load the data once; ``model_overrides`` / ``train_overrides``
    change config fields (the demo uses them for small, fast models).
    """
    from core.temporal.sequences import load_sequences
    from core.runs import (HISTORY_CSV, PCK_CSV, PREDICTIONS, WEIGHTS, create_run_dir, now_iso,
                           save_weights, write_metrics, write_run_info, write_table)
    import pandas as pd

    t_start = time.perf_counter()
    phases: dict[str, float] = {}
    dev = D.init_distributed(resolve_device(device))   # torchrun: this rank's device
    progress = progress and D.is_main_process()          # one set of progress bars
    if not D.is_main_process():
        on_epoch = None
    seed_everything(seed)
    if index is None:
        index = load_sequences(data, seed=seed)
    phases["load_data"] = time.perf_counter() - t_start

    init_run = None
    if init_from is not None and arch != "identity":
        init_run, _ = _resolve_init(Path(init_from), arch)
        model_cfg = config_from_dict(init_run.info["config"]["model"])
    else:
        model_cfg = make_config(arch, **(model_overrides or {}))
    n_kp = len(index.keypoints)
    if model_cfg.keypoints != n_kp:
        raise DataError(index.root, f"has {n_kp} keypoints; the {arch} model expects {model_cfg.keypoints}")
    default_lr = LR_FINETUNE if init_run is not None else LR_SCRATCH
    train_cfg = TrainConfig(**(train_overrides or {}))
    train_cfg.lr = lr if lr is not None else (train_overrides or {}).get("lr", default_lr)
    if epochs is not None:
        train_cfg.epochs = epochs
    if batch_size is not None:
        train_cfg.batch_size = batch_size
    k = model_cfg.frames
    loaders, datasets = _loaders(index, train_cfg, k, seed, dev, datasets)

    model = build_temporal(model_cfg)
    if init_run is not None:
        from core.runs import load_weights
        load_state(model, load_weights(init_run.path / WEIGHTS), init_run.path / WEIGHTS)
    model.to(dev)
    train_model = D.wrap_ddp_temporal(model, dev)        # DDP under torchrun, else model

    info = {
        "kind": "temporal", "name": arch,
        "config": {"model": config_to_dict(model_cfg), "train": asdict(train_cfg)},
        "data": _data_info(index, datasets),
        "init_from": str(init_run.path) if init_run is not None else None,
        "seed": seed, "device": str(dev), "distributed": D.describe(), "started_at": now_iso(),
    }
    # A killed run of this exact call (same arch, configs, data, seed, init) resumes.
    # Only rank 0 looks at (and writes) the runs folder; the other ranks get its resume
    # state and write into a private scratch folder.
    resume = None
    if D.is_main_process():
        run_dir = _resumable_run(runs_dir, info)
        if run_dir is not None:
            resume = load_checkpoint(run_dir / LAST, run_dir / WEIGHTS)
            old = json.loads((run_dir / "run.json").read_text())
            info["started_at"] = old.get("started_at", info["started_at"])
            info["resumed_after_epoch"] = [*old.get("resumed_after_epoch", []), resume["epoch"]]
        else:
            run_dir = create_run_dir(runs_dir, arch)
    else:
        run_dir = create_run_dir(D.scratch_dir(), arch)
    resume = D.broadcast_object(resume)
    write_run_info(run_dir, info)

    history_rows: list[dict] = list(resume["result"].history) if resume else []

    def _epoch_done(epoch: int, row: dict) -> None:
        history_rows.append(row)
        write_table(run_dir / HISTORY_CSV, pd.DataFrame(history_rows))
        if on_epoch:
            on_epoch(epoch, row)

    t0 = time.perf_counter()
    trainable = any(p.requires_grad for p in model.parameters())
    if trainable and train_cfg.epochs > 0:
        def _checkpoint(epoch: int, result: FitResult, state: dict, improved: bool) -> None:
            if improved:  # best weights first: the resume checkpoint relies on them
                save_weights(run_dir / WEIGHTS, result.best_state, metadata={"arch": arch})
            save_checkpoint(run_dir / LAST, epoch, result, state)

        result = fit(train_model, loaders["train"], loaders["val"], train_cfg, dev, seed=seed,
                     progress=progress, on_epoch=_epoch_done, checkpoint=_checkpoint, resume=resume)
        model.load_state_dict(result.best_state)
        best_epoch, stopped_early = result.best_epoch, result.stopped_early
        phases["train"] = time.perf_counter() - t0
    else:
        # identity (or 0 epochs): evaluated only; history holds one epoch-0 row.
        va = evaluate(model, loaders["val"], dev, amp=train_cfg.amp, desc="val")
        _epoch_done(0, {"epoch": 0, "train_loss": math.nan, "train_pck": math.nan,
                        "val_loss": va["loss"], "val_pck": va["pck"], "lr": math.nan,
                        "seconds": time.perf_counter() - t0})
        best_epoch, stopped_early = 0, False
        phases["evaluate_val"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    val = evaluate(model, loaders["val"], dev, amp=train_cfg.amp, desc="val")
    test = evaluate(model, loaders["test"], dev, amp=train_cfg.amp, progress=progress, desc="test")
    phases["evaluate"] = time.perf_counter() - t0

    names = list(index.keypoints)
    video_names = [v.id for v in index.splits["test"]]
    write_table(run_dir / PREDICTIONS, predictions_frame(test, video_names, names))
    table = pck_table(_flat(test["pred"]), _flat(test["gt"]), _flat(test["visible"]),
                      _flat(test["norm"]), identity_pred=_flat(test["input"]), names=names)
    write_table(run_dir / PCK_CSV, table)
    save_weights(run_dir / WEIGHTS, model.state_dict(), metadata={"arch": arch})

    info.update(ended_at=now_iso(), phase_seconds={**phases, "total": time.perf_counter() - t_start})
    write_run_info(run_dir, info)
    metrics: dict[str, Any] = {"headline": "test_pck@0.05"}
    for i, a in enumerate(PCK_THRESHOLDS):
        metrics[f"test_pck@{a:g}"] = float(test["pck_all"][i])
    for i, a in enumerate(PCK_THRESHOLDS):
        metrics[f"identity_pck@{a:g}"] = float(test["identity_pck_all"][i])
    metrics.update({
        "val_pck@0.05": val["pck"], "val_loss": val["loss"], "test_loss": test["loss"],
        "best_epoch": best_epoch, "epochs_run": len(history_rows) if trainable else 0,
        "stopped_early": stopped_early, "num_test_windows": int(test["pred"].shape[0]),
        "num_test_frames": int(test["pred"].shape[0] * test["pred"].shape[1]),
    })
    write_metrics(run_dir, metrics)
    (run_dir / LAST).unlink(missing_ok=True)   # finished: the resume state has no use left
    if D.is_distributed():
        run_dir = D.broadcast_object(run_dir)   # every rank returns rank 0's folder
        D.remove_scratch()
    return run_dir


def _grid_init(init_from, arch: str):
    """Grid --init-from: a run folder (used for its own arch) or a folder of runs (the
    newest finished temporal run of each arch). None when nothing fits ``arch``."""
    from core.runs import RUN_JSON, list_runs, load_run
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
    from core.temporal.sequences import load_sequences
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


# ----------------------------------------------------------------------------- demo
# The embedded demo's temporal part (``python -m core demo``) must fit in about 1.5 min
# of the whole demo's 5-minute budget on a 2-core CPU: small data (32-px heatmaps, 12
# short videos), training windows every 2nd frame, narrow models, a few epochs each.
# Epochs and lr differ per model because their costs and step sizes differ: DeciWatch
# works on coordinates (an epoch costs ~0.5 s) and gets more epochs; the ConvLSTMs
# move slowly at 1e-3 in so few steps. Every setting lands in the runs' run.json.
DEMO_DATA = dict(videos=12, frames=30, heatmap=32, noise=1.0)
DEMO_MODEL_OVERRIDES: dict[str, dict[str, Any]] = {
    "conv3d": dict(hidden=16),
    "deciwatch": dict(embed_dim=64, heads=4, ffn_dim=128, encoder_layers=2, decoder_layers=2),
    "convlstm-sum": dict(hidden=8),
    "convlstm-concat": dict(hidden=8),
    "identity": {},
}
DEMO_PLAN: dict[str, dict[str, Any]] = {  # arch -> epochs + TrainConfig overrides
    "conv3d": dict(epochs=4, train_stride=2),
    "deciwatch": dict(epochs=12, train_stride=2),
    "convlstm-sum": dict(epochs=5, train_stride=2, lr=3e-3),
    "convlstm-concat": dict(epochs=5, train_stride=2, lr=3e-3),
    "identity": dict(epochs=0, train_stride=2),
}


def build_temporal_demo(*, data_dir, runs_dir, device: str = "auto", seed: int = 0,
                        report: Callable[[float, str], None] | None = None,
                        start: float = 0.7, end: float = 1.0) -> list[Path]:
    """Synthetic sequences + the four models and identity for the demo; returns run folders.

    ``report(fraction, message)`` receives progress as a fraction of the *whole* demo,
    mapped into [start, end] (the classifier part owns 0..0.7). The data are loaded and
    windowed once for all runs.
    """
    # The demo's models are tiny (8-16 channels at 32 px): each op is too small for a
    # second CPU thread to pay, and on a busy machine oversubscribed threads spin.
    # Measured on the shared 2-core CPU: 33 s with 1 thread vs 177 s with 2, same PCKs.
    threads = torch.get_num_threads()
    if resolve_device(device).type == "cpu":
        torch.set_num_threads(1)
    try:
        return _build_temporal_demo(data_dir=data_dir, runs_dir=runs_dir, device=device,
                                    seed=seed, report=report, start=start, end=end)
    finally:
        torch.set_num_threads(threads)


def _build_temporal_demo(*, data_dir, runs_dir, device, seed, report, start, end) -> list[Path]:
    from core.temporal.sequences import load_sequences
    from core.temporal.synth import write_sequence_dataset
    say = report or (lambda f, m: None)
    out = Path(data_dir) / "sequences"
    if _demo_meta(out) != {**DEMO_DATA, "seed": seed}:   # reuse identical data
        say(start, "temporal: writing synthetic sequences")
        write_sequence_dataset(out, seed=seed, progress=False, **DEMO_DATA)
    index = load_sequences(out, seed=seed)
    datasets = make_window_datasets(index, train_stride=2)
    # share of the temporal span per step, roughly proportional to its measured cost
    cost = {"data": 1.0, "conv3d": 2.0, "deciwatch": 1.0, "convlstm-sum": 2.5,
            "convlstm-concat": 2.5, "identity": 0.2}
    total = sum(cost.values())
    done = cost["data"]
    paths = []
    for arch, plan in DEMO_PLAN.items():
        plan = dict(plan)
        epochs = plan.pop("epochs")
        base = done
        finished = _finished_demo_run(runs_dir, arch, index.fingerprint, epochs, seed,
                                      DEMO_MODEL_OVERRIDES[arch], plan)
        if finished is not None:  # idempotent, like the classifier part
            say(start + (end - start) * (base + cost[arch]) / total, f"temporal: {arch} already built")
            paths.append(finished)
            done += cost[arch]
            continue
        say(start + (end - start) * base / total, f"temporal: training {arch}")

        def on_epoch(epoch: int, row: dict, arch=arch, base=base, epochs=epochs) -> None:
            f = base + cost[arch] * epoch / max(epochs, 1)
            say(start + (end - start) * f / total,
                f"temporal: {arch} epoch {epoch}/{epochs}, val PCK@0.05 {row['val_pck']:.3f}")

        paths.append(train_temporal(
            data=out, arch=arch, runs_dir=runs_dir, epochs=epochs, device=device, seed=seed,
            progress=False, index=index, datasets=datasets,
            model_overrides=DEMO_MODEL_OVERRIDES[arch], train_overrides=plan, on_epoch=on_epoch))
        done += cost[arch]
    say(end, "temporal: done")
    return paths


def _resumable_run(runs_dir, info: dict) -> Path | None:
    """An unfinished run folder of exactly this call with a resume checkpoint, if any."""
    from core.runs import list_runs
    keys = ("name", "config", "init_from", "seed")
    for run in list_runs(runs_dir, kind="temporal"):
        if (not run.finished and (run.path / LAST).is_file()
                and all(run.info.get(k) == info[k] for k in keys)
                and run.info.get("data", {}).get("fingerprint") == info["data"]["fingerprint"]):
            return run.path
    return None


def _demo_meta(out: Path) -> dict | None:
    """The generator settings recorded in a sequence dataset's index.json (None if absent)."""
    try:
        meta = json.loads((out / "index.json").read_text()).get("generator")
    except (OSError, ValueError, AttributeError):
        return None
    return meta if isinstance(meta, dict) else None


def _finished_demo_run(runs_dir, arch: str, fingerprint: str, epochs: int, seed: int,
                       model_overrides: dict, train_overrides: dict) -> Path | None:
    """A finished run of exactly this demo step on exactly this data, if one exists."""
    from core.runs import list_runs
    want_model = config_to_dict(make_config(arch, **model_overrides))
    want_train = asdict(TrainConfig(**{**train_overrides, "epochs": epochs}))
    for run in list_runs(runs_dir, kind="temporal"):
        cfg = run.info.get("config", {})
        train = dict(cfg.get("train", {}))
        if (run.finished and run.name == arch and run.info.get("seed") == seed
                and run.info.get("data", {}).get("fingerprint") == fingerprint
                and run.info.get("init_from") is None
                and cfg.get("model") == want_model and train == want_train):
            return run.path
    return None
