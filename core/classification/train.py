"""Classifier training: plain ``train_one_epoch`` / ``evaluate`` / ``fit`` functions
(torchvision's references style) and the run-writing entry points
``train_classifier`` / ``train_classifier_grid`` (DESIGN.md §4-§5).

Recipe (the paper's): Adam lr 1e-3, StepLR(step 7, gamma 0.1), batch 64, 10 epochs,
cross-entropy, best epoch by validation accuracy kept. channels_last everywhere; bf16 autocast on
CUDA only. Presets that train nothing before the pooled features (all paper presets) train
on cached features (``core.classification.features``); the grid computes them in one shared pass.

Run folder lifecycle: run.json at start -> history.csv + weights.safetensors (best epoch)
+ last.safetensors (resume state) after every epoch -> predictions.parquet -> run.json
again (end time) -> metrics.json LAST. A killed run is resumed by the next identical call
(same preset, config, seed, data fingerprint, backbone) from its last finished epoch.
Resume state is safetensors + JSON metadata: nothing is ever unpickled.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from core import distributed as D
from core import runs as R
from core.classification.backbones import backbone_id, resolve_backbone
from core.errors import DataError, RunError, TrainingError
from core.classification.features import cached_features, feature_cache_path
from core.classification.model import (PAPER_PRESETS, PRESETS, ClassifierConfig, PoseClassifier,
                                    build_classifier, get_preset, load_trained_weights)

LAST = "last.safetensors"   # resume checkpoint of an unfinished run (removed when finished)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10              # paper: 10 (0 for the untrained baseline)
    batch_size: int = 64          # paper: 64
    lr: float = 1e-3              # Adam learning rate (paper: 1e-3)
    step_size: int = 7            # StepLR: multiply lr by gamma every step_size epochs
    gamma: float = 0.1
    image_size: int = 224         # square crop side fed to ResNet-50 (paper: 224)
    margin: float = 0.15          # crop margin around the person's bbox (PoseDataset's default)
    feature_cache: bool = True    # train on cached pooled features when the preset allows it


# ----------------------------------------------------------------------------- devices

def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(None, "--device cuda asked for, but no CUDA device is available")
    return device


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed), nothing elsewhere: CPU bf16 is slow."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_workers(device: torch.device) -> int:
    # On a 2-core CPU box the backbone already uses every core; workers only add forks.
    n = os.cpu_count() or 1
    return 0 if (device.type == "cpu" and n <= 2) else min(8, n - 1)


# ----------------------------------------------------------------------------- one epoch

def _logits(model: PoseClassifier, batch: dict, device: torch.device) -> torch.Tensor:
    """Images go through the whole model; cached ``features`` only through the head."""
    kp = batch["keypoints"].to(device, non_blocking=True) if model.cfg.use_keypoints else None
    with autocast_for(device):
        if "features" in batch:
            return model.forward_head(batch["features"].to(device, non_blocking=True), kp)
        # channels_last everywhere (CPU included: ~1.4x faster ResNet-50), and the same
        # layout as the cached-feature pass, so both paths do the same arithmetic.
        images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        return model(images, kp)


def train_one_epoch(model: PoseClassifier, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    device: torch.device, *, progress: bool = False, desc: str = "train") -> dict:
    """One pass over ``loader``; returns {"loss", "acc"} (sample-weighted means).

    Raises TrainingError on a non-finite loss, before the bad step is applied."""
    from tqdm.auto import tqdm
    model.train()
    total, loss_sum, correct = 0, 0.0, 0
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        labels = batch["label"].to(device, non_blocking=True)
        logits = _logits(model, batch, device)                         # (B, C)
        loss = F.cross_entropy(logits.float(), labels)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise TrainingError(f"loss became {loss_value} after {total} samples of this epoch "
                                f"(lower the learning rate, or check the data for bad values)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = labels.shape[0]
        total += n
        loss_sum += loss_value * n
        correct += int((logits.argmax(1) == labels).sum())
    loss_sum, correct, total = D.all_reduce_sum(loss_sum, correct, total)   # torchrun: every rank's samples
    return {"loss": loss_sum / max(total, 1), "acc": correct / total if total else float("nan")}


@torch.inference_mode()
def evaluate(model: PoseClassifier, loader: DataLoader, device: torch.device, *,
             progress: bool = False, desc: str = "eval") -> dict:
    """{"loss", "acc", "probs" (N, C) float32 numpy, "labels" (N,) numpy} over ``loader``."""
    from tqdm.auto import tqdm
    model.eval()
    probs, labels, loss_sum = [], [], 0.0
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        y = batch["label"].to(device, non_blocking=True)
        logits = _logits(model, batch, device).float()                 # (B, C)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        probs.append(logits.softmax(1).cpu())
        labels.append(y.cpu())
    if not probs:
        return {"loss": float("nan"), "acc": float("nan"),
                "probs": np.zeros((0, model.cfg.num_classes), np.float32), "labels": np.zeros(0, np.int64)}
    p, y = torch.cat(probs).numpy(), torch.cat(labels).numpy()
    from core.metrics import accuracy
    return {"loss": loss_sum / len(y), "acc": accuracy(p.argmax(1), y), "probs": p, "labels": y}


# ----------------------------------------------------------------------------- fit

@dataclass
class FitState:
    """Everything needed to continue training after a given epoch (resume checkpoint)."""
    epoch: int = 0                                  # last finished epoch (0 = none)
    best_epoch: int = 0
    best_acc: float = -1.0
    best_weights: dict | None = None                # trainable state of the best epoch (CPU)
    optimizer: dict | None = None                   # optimizer.state_dict()
    scheduler: dict | None = None                   # scheduler.state_dict()
    history: list[dict] | None = None               # one row per finished epoch


def make_optimizer(model: PoseClassifier, tcfg: TrainConfig):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=tcfg.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=tcfg.step_size, gamma=tcfg.gamma)
    return optimizer, scheduler


def fit(model: PoseClassifier, train_loader: DataLoader, val_loader: DataLoader, *,
        tcfg: TrainConfig, device: torch.device, seed: int = 0, state: FitState | None = None,
        on_epoch: Callable[[FitState, bool], None] | None = None, progress: bool = True) -> FitState:
    """Train for ``tcfg.epochs`` (continuing from ``state``), keeping the best epoch by
    validation accuracy. ``on_epoch(state, improved)`` runs after every epoch (the run
    writer persists history, best weights and the resume checkpoint there).

    Each epoch reseeds the shuffling generator and torch's RNG (dropout) from
    (seed, epoch), so a resumed run sees exactly the batches and masks of an unbroken one.
    """
    from tqdm.auto import tqdm
    state = state or FitState()
    state.history = list(state.history or [])
    optimizer, scheduler = make_optimizer(model, tcfg)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
    gen = getattr(train_loader, "generator", None)
    epochs = range(state.epoch + 1, tcfg.epochs + 1)
    for epoch in tqdm(epochs, desc="epochs", disable=not progress or not len(epochs), leave=False):
        t0 = time.perf_counter()
        if gen is not None:
            gen.manual_seed(seed * 100_003 + epoch)
        torch.manual_seed(seed * 100_003 + epoch)
        lr = optimizer.param_groups[0]["lr"]
        tr = train_one_epoch(model, train_loader, optimizer, device, progress=progress,
                             desc=f"epoch {epoch}")
        va = evaluate(model, val_loader, device)
        scheduler.step()
        improved = math.isnan(va["acc"]) or va["acc"] > state.best_acc   # no val set: keep the last
        if improved:
            state.best_epoch, state.best_acc = epoch, va["acc"]
            state.best_weights = {k: v.detach().cpu().clone() for k, v in model.trainable_state_dict().items()}
        state.epoch = epoch
        state.optimizer, state.scheduler = optimizer.state_dict(), scheduler.state_dict()
        state.history.append({"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"],
                              "val_loss": va["loss"], "val_acc": va["acc"], "lr": lr,
                              "seconds": round(time.perf_counter() - t0, 3)})
        if on_epoch is not None:
            on_epoch(state, improved)
    return state


# ----------------------------------------------------------------------------- resume checkpoint

def save_checkpoint(path: Path, model: PoseClassifier, state: FitState) -> None:
    """last.safetensors: trainable weights + optimizer tensors; the rest as JSON metadata."""
    tensors = {f"model.{k}": v for k, v in model.trainable_state_dict().items()}
    opt_meta: dict = {"param_groups": state.optimizer["param_groups"], "scalars": {}}
    for pid, st in state.optimizer["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = v
            else:
                opt_meta["scalars"][f"{pid}.{name}"] = v
    meta = {"epoch": state.epoch, "best_epoch": state.best_epoch, "best_acc": state.best_acc,
            "optimizer": opt_meta, "scheduler": state.scheduler, "history": state.history}
    R.save_weights(path, tensors, metadata={"poselab_resume": json.dumps(meta)})


def load_checkpoint(path: Path, model: PoseClassifier, best_weights_path: Path) -> FitState:
    """Restore model weights from last.safetensors and return the FitState to continue."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["poselab_resume"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise RunError(path, f"resume checkpoint cannot be read ({e})") from None
    load_trained_weights(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    opt_state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = v
    for k, v in meta["optimizer"]["scalars"].items():
        pid, name = k.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = v
    best = R.load_weights(best_weights_path) if meta["best_epoch"] > 0 else None
    return FitState(epoch=meta["epoch"], best_epoch=meta["best_epoch"], best_acc=meta["best_acc"],
                    best_weights=best, optimizer={"state": opt_state, "param_groups": meta["optimizer"]["param_groups"]},
                    scheduler=meta["scheduler"], history=meta["history"])


# ----------------------------------------------------------------------------- runs

@dataclass
class _Prepared:
    """What every preset of a grid shares: data, backbone, device, cached features."""
    index: object                                   # core.classification.dataset.PoseIndex
    backbone_state: dict
    backbone_info: dict
    device: torch.device
    runs_dir: Path
    features: dict | None                           # split -> FeatureSet (None: not computed)
    phase_seconds: dict
    image_decoder: str = "pil"                      # what decoded the image cache (run.json)
    cache_runs_dir: Path | None = None              # where _cache/ lives (runs_dir of rank 0)
    image_sets: dict | None = None                  # split -> CachedPoseDataset, built on demand


def _prepare(data, *, runs_dir, device, seed, weights, image_size: int, margin: float) -> _Prepared:
    from core.classification.dataset import load_infiniteform
    t0 = time.perf_counter()
    index = load_infiniteform(data, seed=seed)
    if D.is_main_process():
        print(index.summary(), file=sys.stderr, flush=True)   # counts + why samples were skipped
    if not index.classes:
        raise DataError(data, "dataset has no classes")
    if not index.splits.get("train"):
        raise DataError(data, "dataset has no training samples")
    t1 = time.perf_counter()
    backbone_state, backbone_info = resolve_backbone(weights, runs_dir=runs_dir, seed=seed)
    if backbone_info["source"] == "random":
        backbone_state, backbone_info = _calibrated(backbone_state, backbone_info, index, Path(runs_dir),
                                                    device=device, image_size=image_size, margin=margin)
    t2 = time.perf_counter()
    return _Prepared(index, backbone_state, backbone_info, device, Path(runs_dir), None,
                     {"load_data": round(t1 - t0, 3), "backbone": round(t2 - t1, 3)},
                     cache_runs_dir=Path(runs_dir))


CALIBRATION_SAMPLES = 64    # training crops that set a random backbone's BN statistics (one batch)


def _calibrated(state: dict, info: dict, index, runs_dir: Path, *, device: torch.device,
                image_size: int, margin: float) -> tuple[dict, dict]:
    """A random backbone with BN statistics estimated on this dataset's training crops
    (see core.classification.backbones), computed once per (init, data, crop size) and stored."""
    from core.classification.backbones import calibrate_batchnorm, store_backbone
    from core.io import write_json
    key = runs_dir / "_backbones" / f"calibrated-{info['sha256'][:16]}-{index.fingerprint}-{image_size}.json"
    try:
        known = json.loads(key.read_text())
        path = runs_dir / known["stored"]
        if path.is_file():
            return R.load_weights(path), {**info, **known}
    except (OSError, ValueError, KeyError, RunError):
        pass   # not calibrated yet (or a damaged note): calibrate again
    samples = sorted(index.splits["train"], key=lambda s: s.sample_id)[:CALIBRATION_SAMPLES]
    # drop_last: a final batch of 1 cannot give BatchNorm batch statistics
    loader = DataLoader(_pose_dataset(samples, image_size, margin), batch_size=64,
                        drop_last=len(samples) > 64, num_workers=default_workers(device))
    state = calibrate_batchnorm(state, (b["image"] for b in loader), device=device)
    sha, stored = store_backbone(state, runs_dir)
    known = {"sha256": sha, "stored": stored,
             "weights": f"{info['weights']}, BatchNorm statistics from {len(samples)} training crops "
                        f"({image_size} px) of data {index.fingerprint}"}
    write_json(key, known)
    return state, {**info, **known}


def _pose_dataset(samples, image_size: int, margin: float):
    """Eval-style crops (no augmentation): the cached features and the image path must see
    exactly the same inputs."""
    from core.classification.crops import PoseDataset
    return PoseDataset(list(samples), image_size=image_size, margin=margin, augment=False)


def _image_sets(prep: _Prepared, tcfg: TrainConfig) -> dict:
    """split -> CachedPoseDataset at the run's crop size; the image cache of the whole
    dataset is built once (rank 0, every core) and shared by every preset of the grid."""
    from core.classification.image_cache import cached_pose_dataset
    key = (tcfg.image_size, tcfg.margin)
    if prep.image_sets is None or prep.image_sets.get("key") != key:
        splits = prep.index.splits
        everything = [s for k in ("train", "val", "test") for s in splits.get(k, [])]
        cache = cached_pose_dataset(everything, all_samples=everything, fingerprint=prep.index.fingerprint,
                                    image_size=tcfg.image_size, margin=tcfg.margin,
                                    runs_dir=prep.cache_runs_dir, progress=False,
                                    decoder=prep.image_decoder, device=prep.device).cache
        prep.image_sets = {"key": key, **{k: cache.dataset(splits.get(k, [])) for k in ("train", "val", "test")}}
    return prep.image_sets


def _shared_features(prep: _Prepared, *, image_size: int, batch_size: int, progress: bool,
                     margin: float = 0.15, on_progress=None) -> dict:
    """One feature pass over every split (only samples not cached yet are computed).
    The cache key has no margin: every caller uses TrainConfig's default crop margin.
    The images come from the image cache of ``prep.image_decoder``; features from the
    torchvision (GPU JPEG) decoder carry their own key, its pixels differ from PIL's by a
    level or two."""
    from core.classification.image_cache import cached_pose_dataset   # crops decoded once
    extractor = build_classifier(PRESETS["model1"], prep.backbone_state).to(prep.device)
    extractor = extractor.to(memory_format=torch.channels_last)     # see compute_features
    splits = prep.index.splits
    everything = [s for name in ("train", "val", "test") for s in splits.get(name, [])]
    path = feature_cache_path(prep.cache_runs_dir, prep.index.fingerprint, backbone_id(prep.backbone_info),
                              image_size, prep.image_decoder, prep.device)
    fs = cached_features(extractor, everything,
                         lambda ss: cached_pose_dataset(ss, all_samples=everything,
                                                        fingerprint=prep.index.fingerprint,
                                                        image_size=image_size, margin=margin,
                                                        runs_dir=prep.cache_runs_dir, progress=progress,
                                                        decoder=prep.image_decoder, device=prep.device),
                         path=path, device=prep.device, batch_size=batch_size,
                         num_workers=default_workers(prep.device), progress=progress,
                         on_progress=on_progress)
    out, start = {}, 0
    for name in ("train", "val", "test"):
        n = len(splits.get(name, []))
        out[name] = type(fs)(fs.features[start:start + n], fs.keypoints[start:start + n],
                             fs.labels[start:start + n])
        start += n
    return out


def train_classifier(*, data, preset: str, runs_dir, epochs: int | None = None, device="auto",
                     seed: int = 0, batch_size: int | None = None, lr: float | None = None,
                     weights=None, image_size: int = 224, progress: bool = True,
                     feature_cache: bool = True, init_from=None, decoder: str = "auto") -> Path:
    """Train one preset on ``data`` and return its run folder (see module docstring)."""
    return train_classifier_grid(data=data, presets=[preset], runs_dir=runs_dir, epochs=epochs,
                                 device=device, seed=seed, batch_size=batch_size, lr=lr,
                                 weights=weights, image_size=image_size, progress=progress,
                                 feature_cache=feature_cache, init_from=init_from, decoder=decoder)[0]


def train_classifier_grid(*, data, presets: Sequence[str] | None = None, runs_dir, epochs=None,
                          device="auto", seed: int = 0, batch_size: int | None = None,
                          lr: float | None = None, weights=None, image_size: int = 224,
                          progress: bool = True, feature_cache: bool = True, init_from=None,
                          reuse_finished: bool = False, decoder: str = "auto",
                          on_progress: Callable[[float, str], None] | None = None) -> list[Path]:
    """Train several presets (default: the paper's seven) with ONE shared feature pass.

    ``reuse_finished``: return an existing finished run of the identical call instead of
    training again (the demo uses it to be idempotent). ``on_progress(fraction, message)``
    is called as the grid advances (features = first half, presets share the second)."""
    presets = list(presets or PAPER_PRESETS)
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise RunError(None, f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    runs_dir = Path(runs_dir)
    dev = D.init_distributed(resolve_device(device))   # torchrun: this rank's device
    progress = progress and D.is_main_process()          # one set of progress bars
    base = TrainConfig(image_size=image_size, feature_cache=feature_cache)
    base = replace(base, **{k: v for k, v in dict(batch_size=batch_size, lr=lr).items() if v is not None})
    with D.main_process_first():   # rank 0 stores/calibrates the backbone, then the others read it
        prep = _prepare(data, runs_dir=runs_dir, device=dev, seed=seed, weights=weights,
                        image_size=image_size, margin=base.margin)
    if init_from is not None:      # fail before the long feature pass, not after it
        _check_init_from(Path(init_from), list(prep.index.classes))
    from core.classification.image_cache import resolve_decoder
    prep.image_decoder = resolve_decoder(
        [s for k in ("train", "val", "test") for s in prep.index.splits.get(k, [])], decoder, dev)
    if feature_cache and any(PRESETS[p].feature_cacheable for p in presets):
        t0 = time.perf_counter()
        prep.features = _shared_features(
            prep, image_size=image_size, batch_size=base.batch_size, progress=progress,
            on_progress=None if on_progress is None else (lambda f, m: on_progress(0.5 * f, m)))
        prep.phase_seconds["features"] = round(time.perf_counter() - t0, 3)
    _report(on_progress, 0.5, "features ready")
    if not D.is_main_process():    # only rank 0 writes run folders; the others write to scratch
        prep.runs_dir = D.scratch_dir()
    out = []
    for i, name in enumerate(presets):
        cfg = get_preset(name, len(prep.index.classes))
        n_epochs = (10 if epochs is None else epochs) if cfg.trained else 0
        out.append(_run_preset(name, cfg, replace(base, epochs=n_epochs), prep, seed=seed,
                               progress=progress, init_from=init_from, reuse_finished=reuse_finished))
        _report(on_progress, 0.5 + 0.5 * (i + 1) / len(presets), f"trained {name}")
    if D.is_distributed():
        out = D.broadcast_object(out)      # every rank returns rank 0's run folders
        D.remove_scratch()
    return out


def _report(on_progress, fraction: float, message: str) -> None:
    if on_progress is not None:
        on_progress(fraction, message)


def _data_info(index) -> dict:
    return {"root": str(Path(index.root).resolve()), "sources": [str(s) for s in index.sources],
            "fingerprint": index.fingerprint, "classes": list(index.classes),
            "num_train": len(index.splits.get("train", [])), "num_val": len(index.splits.get("val", [])),
            "num_test": len(index.splits.get("test", [])), "skipped": dict(index.skipped or {})}


def _find_run(runs_dir: Path, name: str, config: dict, data_info: dict, backbone: dict, seed: int,
              init_from, *, finished: bool) -> Path | None:
    """The newest run of this exact call (preset, config, seed, data fingerprint, backbone,
    init): a finished one (to reuse) or an unfinished one with a resume checkpoint."""
    for run in R.list_runs(runs_dir, kind="classifier"):
        info = run.info
        if run.finished != finished or info.get("name") != name:
            continue
        if not finished and not (run.path / LAST).is_file():
            continue                 # killed before its first epoch ended: nothing to resume
        same = (info.get("config") == config and info.get("seed") == seed
                and info.get("init_from") == (str(init_from) if init_from else None)
                and (info.get("backbone") or {}).get("sha256") == backbone.get("sha256")
                and (info.get("data") or {}).get("fingerprint") == data_info["fingerprint"])
        if not same:
            continue
        if info["data"].get("classes") != data_info["classes"]:
            raise RunError(run.path / R.RUN_JSON, "run of the same data has different classes "
                                                  f"({info['data'].get('classes')} vs {data_info['classes']})")
        return run.path
    return None


def _loaders(cfg: ClassifierConfig, tcfg: TrainConfig, prep: _Prepared, seed: int):
    use_features = prep.features is not None and tcfg.feature_cache and cfg.feature_cacheable
    splits = prep.index.splits
    gen = torch.Generator().manual_seed(seed)
    if not use_features:           # through the backbone: crops from the image cache
        from core.classification.image_cache import CachedLoader
        sets = _image_sets(prep, tcfg)
        sampler = (D.ShardedBatchSampler(len(sets["train"]), tcfg.batch_size, shuffle=True, generator=gen)
                   if D.is_distributed() else None)
        train = CachedLoader(sets["train"], batch_size=tcfg.batch_size, device=prep.device, shuffle=True,
                             generator=gen, batch_sampler=sampler)
        val, test = (CachedLoader(sets[k], batch_size=tcfg.batch_size, device=prep.device)
                     for k in ("val", "test"))
        return train, val, test, use_features
    sets, workers = prep.features, 0
    pin = prep.device.type == "cuda"
    if D.is_distributed():         # this rank's share of the single-process global batches
        train = D.sharded_loader(sets["train"], batch_size=tcfg.batch_size, shuffle=True, generator=gen,
                                 num_workers=workers, pin_memory=pin)
    else:
        train = DataLoader(sets["train"], batch_size=tcfg.batch_size, shuffle=True, generator=gen,
                           num_workers=workers, pin_memory=pin)
    val, test = (DataLoader(sets[k], batch_size=tcfg.batch_size, shuffle=False, num_workers=workers,
                            pin_memory=pin) for k in ("val", "test"))
    return train, val, test, use_features


def _run_preset(name: str, cfg: ClassifierConfig, tcfg: TrainConfig, prep: _Prepared, *, seed: int,
                progress: bool, init_from=None, reuse_finished: bool = False) -> Path:
    index, runs_dir = prep.index, prep.runs_dir
    data_info = _data_info(index)
    config = {"model": cfg.to_dict(), "train": asdict(tcfg)}
    if reuse_finished:
        done = _find_run(runs_dir, name, config, data_info, prep.backbone_info, seed, init_from,
                         finished=True)
        done = D.broadcast_object(done)    # torchrun: every rank follows rank 0's choice
        if done is not None:
            print(f"{name}: reusing finished run {done.name}", flush=True)
            return done
    # Seed the head's init here: the same preset and seed give the same run whether it is
    # trained alone, inside a grid, on cached features or through the backbone.
    torch.manual_seed(seed)
    model = build_classifier(cfg, prep.backbone_state)
    if init_from is not None:
        _init_from_run(model, Path(init_from), data_info["classes"])
    model = model.to(prep.device)
    if not (prep.features is not None and cfg.feature_cacheable):
        model = model.to(memory_format=torch.channels_last)
    train_loader, val_loader, test_loader, use_features = _loaders(cfg, tcfg, prep, seed)

    run_dir = _find_run(runs_dir, name, config, data_info, prep.backbone_info, seed, init_from,
                        finished=False)
    state = None
    if run_dir is not None:
        state = load_checkpoint(run_dir / LAST, model, run_dir / R.WEIGHTS)
        info = R.load_run(run_dir).info
        info.setdefault("resumed_after_epoch", []).append(state.epoch)
        print(f"resuming {run_dir.name} after epoch {state.epoch}", flush=True)
    else:
        run_dir = R.create_run_dir(runs_dir, name)
        info = {"kind": "classifier", "name": name, "config": config, "data": data_info,
                "backbone": prep.backbone_info, "seed": seed, "device": str(prep.device),
                "feature_cache": use_features, "init_from": str(init_from) if init_from else None,
                "image_decoder": prep.image_decoder, "distributed": D.describe(),
                "started_at": R.now_iso(), "ended_at": None, "phase_seconds": dict(prep.phase_seconds)}
    state = D.broadcast_object(state)      # torchrun: rank 0 alone reads the resume checkpoint
    R.write_run_info(run_dir, info)
    _write_history(run_dir, (state.history if state else None) or [])

    def on_epoch(st: FitState, improved: bool) -> None:
        _write_history(run_dir, st.history)
        if improved:                       # best weights first: the checkpoint points at them
            R.save_weights(run_dir / R.WEIGHTS, st.best_weights)
        save_checkpoint(run_dir / LAST, model, st)

    t0 = time.perf_counter()
    if tcfg.epochs > 0:
        state = fit(D.wrap_ddp(model, prep.device), train_loader, val_loader, tcfg=tcfg,
                    device=prep.device, seed=seed,
                    state=state, on_epoch=on_epoch, progress=progress)
    else:
        state = FitState(history=[])
    t1 = time.perf_counter()
    if state.best_weights is not None:
        load_trained_weights(model, state.best_weights, run_dir / R.WEIGHTS)
    else:                                  # untrained baseline: its random head is the "weights"
        R.save_weights(run_dir / R.WEIGHTS, model.trainable_state_dict())
    val = evaluate(model, val_loader, prep.device)
    test = evaluate(model, test_loader, prep.device, progress=progress, desc="test")
    _write_predictions(run_dir, index, test)
    t2 = time.perf_counter()

    info["phase_seconds"] = {**info.get("phase_seconds", {}),
                             "train": round(info.get("phase_seconds", {}).get("train", 0) + t1 - t0, 3),
                             "evaluate": round(t2 - t1, 3)}
    info["ended_at"] = R.now_iso()
    R.write_run_info(run_dir, info)
    from core.metrics import confusion_matrix, per_class_report
    cm = confusion_matrix(test["probs"].argmax(1), test["labels"], cfg.num_classes)
    f1 = per_class_report(cm)["f1"]
    R.write_metrics(run_dir, {
        "headline": "test_acc", "test_acc": test["acc"], "test_loss": test["loss"],
        "val_acc": val["acc"], "val_loss": val["loss"], "best_epoch": state.best_epoch,
        "test_macro_f1": float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan"),
        "num_test": int(len(test["labels"])), "epochs_run": state.epoch,
    })
    (run_dir / LAST).unlink(missing_ok=True)   # finished: the resume state has no use left
    return run_dir


def _init_from_run(model: PoseClassifier, path: Path, classes: list[str]) -> None:
    _check_init_from(path, classes)
    load_trained_weights(model, R.load_weights(path / R.WEIGHTS), path / R.WEIGHTS)


def _check_init_from(path: Path, classes: list[str]) -> None:
    run = R.load_run(path, require_finished=True)
    if run.kind != "classifier":
        raise RunError(path, f"--init-from needs a classifier run, this one is {run.kind!r}")
    theirs = (run.info.get("data") or {}).get("classes")
    if theirs != classes:
        raise RunError(path / R.RUN_JSON, f"run's classes {theirs} differ from the dataset's {classes}")


HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]


def _write_history(run_dir: Path, rows: list[dict]) -> None:
    import pandas as pd
    R.write_table(run_dir / R.HISTORY_CSV, pd.DataFrame(rows, columns=HISTORY_COLUMNS))


def _write_predictions(run_dir: Path, index, test: dict) -> None:
    """predictions.parquet: one row per test sample, columns of the shared contract."""
    import pandas as pd
    samples = index.splits.get("test", [])
    classes = list(index.classes)
    probs, labels = test["probs"], test["labels"]
    pred = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    root = Path(index.root).resolve()
    rows = [_sample_columns(s, root) for s in samples]
    df = pd.DataFrame(rows, columns=["sample_id", "image_path", "image_id", "person_index", "bbox", "keypoints"])
    if not all(isinstance(v, int) for v in df["image_id"]):   # one parquet type per column
        df["image_id"] = df["image_id"].astype(str)
    df.insert(4, "label", labels.astype(np.int64))
    df.insert(5, "label_name", [classes[i] for i in labels])
    df.insert(6, "pred", pred.astype(np.int64))
    df.insert(7, "pred_name", [classes[i] for i in pred])
    df.insert(8, "confidence", probs.max(1).astype(np.float32) if len(probs) else np.zeros(0, np.float32))
    df.insert(9, "correct", pred == labels)
    for j, c in enumerate(classes):
        df[f"prob_{c}"] = probs[:, j].astype(np.float32)
    R.write_table(run_dir / R.PREDICTIONS, df)


def _sample_columns(s, root: Path) -> dict:
    return {"sample_id": str(s.sample_id), "image_path": str(s.rel_path), "image_id": s.image_id,
            "person_index": int(s.person_index), "bbox": [float(v) for v in s.bbox],
            "keypoints": [float(v) for v in np.asarray(s.keypoints, dtype=np.float64).ravel()]}
