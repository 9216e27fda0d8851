"""Classifier training: ``train_one_epoch`` / ``evaluate`` (torchvision's references style)
on ``core.engine.fit``, and the run-writing entry points ``train_classifier`` /
``train_classifier_grid`` (docs/ARCHITECTURE.md, "Training").

Recipe (the paper's): Adam lr 1e-3, StepLR(step 7, gamma 0.1), batch 64, 10 epochs,
cross-entropy, best epoch by validation accuracy kept. The device's faster memory layout
(``engine.memory_format``); bf16 autocast on CUDA only. Presets that train nothing before the pooled features (all paper
presets) train on cached features (``core.classification.features``); the grid computes
them in one shared pass. Presets that train the backbone read their crops from the image
cache (``core.classification.image_cache``). Either way a batch is one indexed read of a
cache, gathered by ``core.distributed.GlobalBatches``, so the same preset and seed see the
same batches on cached features, through the backbone, resumed, or under torchrun.

Entry points: ``train_classifier_grid(job)`` trains every preset of a ``ClassifierJob``
once per seed, sharing one feature pass; ``train_classifier(job)`` is the one-preset,
one-seed case. Each run goes through ``core.engine.RunLifecycle`` (reuse, resume, epoch
checkpoints, finish: described once there).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from core import distributed as D
from core import engine
from core.classification.backbones import (
    BACKBONES_DIR,
    backbone_id,
    calibrate_batchnorm,
    resolve_backbone,
    store_backbone,
)
from core.classification.crops import PoseDataset, model_input, scene_keypoints
from core.classification.dataset import PoseIndex
from core.classification.estimated import KEYPOINT_SOURCES, estimated_keypoints
from core.classification.features import FeatureSet, cached_features, feature_cache_path
from core.classification.image_cache import cached_pose_dataset, resolve_decoder
from core.classification.model import (
    PAPER_PRESETS,
    PRESETS,
    ClassifierConfig,
    PoseClassifier,
    build_classifier,
    fc_width,
    get_preset,
    load_trained_weights,
)
from core.classification.readers import load_pose_dataset
from core.errors import DataError, RunError
from core.estimator.blazepose import model_version
from core.io import read_json, write_json
from core.metrics import accuracy, confusion_matrix, per_class_report
from core.runs import LAST, PREDICTIONS, RUN_JSON, WEIGHTS, BackboneInfo, DataInfo, RunInfo, load_run, load_weights

__all__ = ["TrainConfig", "ClassifierJob", "ClassifierEval", "train_one_epoch", "evaluate", "train_classifier",
           "train_classifier_grid", "PAPER_PRESETS", "LAST"]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10              # paper: 10 (the untrained baseline always gets 0)
    batch_size: int = 64          # paper: 64
    lr: float = 1e-3              # Adam learning rate (paper: 1e-3)
    step_size: int = 7            # StepLR: multiply lr by gamma every step_size epochs
    gamma: float = 0.1
    image_size: int = 224         # square crop side fed to ResNet-50 (paper: 224)
    margin: float = 0.15          # crop margin around the person's bbox (PoseDataset's default)
    feature_cache: bool = True    # train on cached pooled features when the preset allows it


@dataclass(frozen=True)
class ClassifierJob:
    """What ``python -m core train|grid classifier`` runs: which presets and seeds, on which
    data and backbone, into which runs folder, with which recipe."""
    data: Path                                  # dataset folder or its annotation file
    runs_dir: Path                              # receives the run folders, _cache/ and _backbones/
    presets: tuple[str, ...] = PAPER_PRESETS    # one run per preset and seed
    seeds: tuple[int, ...] = (0,)               # seeds of the val split, head init, batch order, dropout
    recipe: TrainConfig = TrainConfig()         # epochs (the untrained baseline gets 0), batch, lr, crops
    weights: str | Path | None = None           # backbone: a file, imagenet, poselab, random; None = the chain
    keypoints: str = "annotation"               # keypoint presets' keypoints: annotation | estimated
    device: str = "auto"                        # auto = CUDA when there is one
    decoder: str = "auto"                       # image cache decoder: auto | pil | torchvision
    init_from: Path | None = None               # start the trained parts from this finished run's
    reuse_finished: bool = False                # return a finished identical run instead of training
    progress: bool = True                       # progress bars (rank 0 only)


@dataclass
class ClassifierEval:
    """``evaluate``'s result: the split's loss and accuracy, and per-sample outputs."""
    loss: float
    acc: float
    count: int                # samples scored
    probs: np.ndarray         # (N, C) float32 softmax probabilities, in the batches' order
    labels: np.ndarray        # (N,) int64 true classes

    @property
    def score(self) -> float:  # what picks the best epoch
        return self.acc


HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
ENTRIES = ("forward", "forward_head")     # the methods a classifier trains through (DDP routes both)
CALIBRATION_SAMPLES = 64    # training crops that set a random backbone's BN statistics (one batch)


def default_workers(device: torch.device) -> int:
    # On a 2-core CPU box the backbone already uses every core; workers only add forks.
    n = os.cpu_count() or 1
    return 0 if (device.type == "cpu" and n <= 2) else min(8, n - 1)


# ----------------------------------------------------------------------------- batches

class Batches:
    """A split's batches for the trainer: ``GlobalBatches`` index batches gathered from a
    cache in one read. ``source`` is a ``FeatureSet`` (cached pooled features) or a
    ``CachedPoseDataset`` (cached crops); both have ``get_batch(indices, device)``.
    Each batch carries ``weight`` (B,): 1, or 0 for a torchrun padding share."""

    def __init__(self, source, batch_size: int, device: torch.device, *, shuffle: bool = False,
                 seed: int = 0):
        # evaluation runs whole on every rank (its splits are small); training is sharded
        world = {} if shuffle else {"rank_": 0, "world": 1}
        self.source, self.device = source, device
        self.order = D.GlobalBatches(len(source), batch_size, shuffle=shuffle, seed=seed, **world)

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        for idx, padding in self.order:
            batch = self.source.get_batch(idx, self.device)
            batch["weight"] = torch.full((len(idx),), 0.0 if padding else 1.0)
            yield batch


# ----------------------------------------------------------------------------- one epoch

def _logits(model: PoseClassifier, batch: dict, device: torch.device) -> torch.Tensor:
    """Images go through the whole model; cached ``features`` only through the head."""
    kp = batch["keypoints"].to(device, non_blocking=True) if D.unwrap(model).cfg.use_keypoints else None
    with engine.autocast(device):
        if "features" in batch:
            return model.forward_head(batch["features"].to(device, non_blocking=True), kp)
        # the device's faster layout (engine.memory_format), the same as the cached-feature
        # pass uses, so both paths do the same arithmetic.
        images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=engine.memory_format(device))
        return model(images, kp)


def train_one_epoch(model: PoseClassifier, batches, optimizer: torch.optim.Optimizer,
                    device: torch.device, *, progress: bool = False, desc: str = "train") -> engine.EpochScore:
    """One pass over ``batches``; returns the loss and accuracy (sample-weighted means over
    every rank). The loss is the global batch's mean cross-entropy (``D.global_mean``); a
    non-finite loss raises TrainingError (``engine.FiniteLoss``). Sums stay on the device
    until the epoch ends: no host sync per step."""
    model.train()
    finite = engine.FiniteLoss(device, desc)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    total = torch.zeros((), device=device)
    for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
        labels = batch["label"].to(device, non_blocking=True)
        weight = batch.get("weight", torch.ones(len(labels))).to(device, non_blocking=True)   # (B,)
        logits = _logits(model, batch, device)                                  # (B, C)
        per_sample = F.cross_entropy(logits.float(), labels, reduction="none")  # (B,)
        count = weight.sum()
        loss, _ = D.global_mean((per_sample * weight).sum(), count)
        finite.update(loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += (per_sample.detach() * weight).sum()
        correct += ((logits.detach().argmax(1) == labels).float() * weight).sum()
        total += count
    finite.check()
    loss_sum, correct, total = D.all_reduce_sum(loss_sum, correct, total)
    return engine.EpochScore(loss=float(loss_sum / max(total, 1)),
                             score=float(correct / total) if total else float("nan"), count=int(total))


@torch.inference_mode()
def evaluate(model: PoseClassifier, batches, device: torch.device, *,
             progress: bool = False, desc: str = "eval") -> ClassifierEval:
    """Loss, accuracy and per-sample probabilities over ``batches`` (in order)."""
    model.eval()
    probs, labels, loss_sum = [], [], torch.zeros((), device=device)
    for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
        y = batch["label"].to(device, non_blocking=True)
        logits = _logits(model, batch, device).float()                 # (B, C)
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        probs.append(logits.softmax(1))
        labels.append(y)
    if not probs:
        return ClassifierEval(float("nan"), float("nan"), 0, np.zeros((0, model.cfg.num_classes), np.float32),
                              np.zeros(0, np.int64))
    p, y = torch.cat(probs).cpu().numpy(), torch.cat(labels).cpu().numpy()
    return ClassifierEval(float(loss_sum) / len(y), accuracy(p.argmax(1), y), len(y), p, y)


def make_optimizer(model: PoseClassifier, tcfg: TrainConfig):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=tcfg.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=tcfg.step_size, gamma=tcfg.gamma)
    return optimizer, scheduler


# ----------------------------------------------------------------------------- what a grid shares

@dataclass
class _Prepared:
    """What every preset of a grid shares: data, backbone, device, cached inputs."""
    index: PoseIndex
    backbone_state: dict
    backbone: BackboneInfo
    device: torch.device
    runs_dir: Path                                  # where _cache/ and _backbones/ live
    phase_seconds: dict
    image_decoder: str = "pil"                      # what decoded the image cache (run.json)
    features: dict | None = None                    # split -> FeatureSet (None: not computed)
    image_sets: dict | None = None                  # split -> CachedPoseDataset, built on demand
    keypoints: str = "annotation"                   # where keypoint presets' keypoints come from
    estimated: dict | None = None                   # split -> (N, 17, 3) estimated keypoints (crop convention)
    found: float | None = None                      # share of crops the estimator found a person in


def _prepare(job: ClassifierJob, *, seed: int, device: torch.device) -> _Prepared:
    """The data split of ``seed``, the backbone and the image decoder, for every preset."""
    data, runs_dir, weights = job.data, Path(job.runs_dir), job.weights
    image_size, margin = job.recipe.image_size, job.recipe.margin
    t0 = time.perf_counter()
    index = load_pose_dataset(data, seed=seed)
    if D.is_main_process():
        print(index.summary(), file=sys.stderr, flush=True)   # counts + why samples were skipped
    if not index.classes:
        raise DataError(data, "dataset has no classes")
    if not index.splits.get("train"):
        raise DataError(data, "dataset has no training samples")
    t1 = time.perf_counter()
    with D.main_process_first():   # rank 0 stores/calibrates the backbone, the others read it
        state, info = resolve_backbone(weights, runs_dir=runs_dir, seed=seed)
        if info["source"] == "random":
            state, info = _calibrated(state, info, index, runs_dir, device=device,
                                      image_size=image_size, margin=margin)
    t2 = time.perf_counter()
    everything = [s for k in ("train", "val", "test") for s in index.splits.get(k, [])]
    return _Prepared(index, state, BackboneInfo.from_dict(info), device, runs_dir,
                     {"load_data": round(t1 - t0, 3), "backbone": round(t2 - t1, 3)},
                     image_decoder=resolve_decoder(everything, job.decoder, device))


def _calibrated(state: dict, info: dict, index: PoseIndex, runs_dir: Path, *, device: torch.device,
                image_size: int, margin: float) -> tuple[dict, dict]:
    """A random backbone with BN statistics estimated on this dataset's training crops
    (see core.classification.backbones), computed once per (init, data, crop size) and stored."""
    key = runs_dir / BACKBONES_DIR / f"calibrated-{info['sha256'][:16]}-{index.fingerprint}-{image_size}.json"
    try:
        known = read_json(key, error=RunError)
        path = runs_dir / known["stored"]
        if path.is_file():
            return load_weights(path), {**info, **known}
    except (OSError, KeyError, TypeError, RunError):
        pass   # not calibrated yet (or a damaged note): calibrate again
    samples = sorted(index.splits["train"], key=lambda s: s.sample_id)[:CALIBRATION_SAMPLES]
    # drop_last: a final batch of 1 cannot give BatchNorm batch statistics
    loader = DataLoader(PoseDataset(samples, image_size=image_size, margin=margin), batch_size=64,
                        drop_last=len(samples) > 64, num_workers=default_workers(device))
    state = calibrate_batchnorm(state, (b["image"] for b in loader), device=device)
    sha, stored = store_backbone(state, runs_dir)
    known = {"sha256": sha, "stored": stored,
             "weights": f"{info['weights']}, BatchNorm statistics from {len(samples)} training crops "
                        f"({image_size} px) of data {index.fingerprint}"}
    write_json(key, known)
    return state, {**info, **known}


def _estimate_keypoints(prep: _Prepared, *, margin: float, progress: bool) -> None:
    """Every sample's estimated keypoints (rank 0 fills the cache, the others read it)."""
    everything = _all_samples(prep.index)
    with D.main_process_first():
        kps, found = estimated_keypoints(everything, fingerprint=prep.index.fingerprint, runs_dir=prep.runs_dir,
                                         margin=margin, progress=progress)
    prep.keypoints, prep.found, prep.estimated, start = "estimated", float(found.mean()), {}, 0
    for name in ("train", "val", "test"):
        n = len(prep.index.splits.get(name, []))
        prep.estimated[name] = kps[start:start + n]
        start += n


def _all_samples(index: PoseIndex) -> list:
    return [s for k in ("train", "val", "test") for s in index.splits.get(k, [])]


def _image_sets(prep: _Prepared, tcfg: TrainConfig) -> dict:
    """split -> CachedPoseDataset at the run's crop size; the image cache of the whole
    dataset is built once (rank 0, every core) and shared by every preset of the grid."""
    key = (tcfg.image_size, tcfg.margin)
    if prep.image_sets is None or prep.image_sets.get("key") != key:
        everything = _all_samples(prep.index)
        cache = cached_pose_dataset(everything, all_samples=everything, fingerprint=prep.index.fingerprint,
                                    image_size=tcfg.image_size, margin=tcfg.margin,
                                    runs_dir=prep.runs_dir, progress=False,
                                    decoder=prep.image_decoder, device=prep.device).cache
        prep.image_sets = {"key": key, **{k: cache.dataset(prep.index.splits.get(k, []))
                                          for k in ("train", "val", "test")}}
    return prep.image_sets


def _shared_features(prep: _Prepared, *, image_size: int, batch_size: int, margin: float,
                     progress: bool, on_progress=None) -> dict[str, FeatureSet]:
    """One feature pass over every split (only samples not cached yet are computed). The
    images come from the image cache of ``prep.image_decoder``; features from the
    torchvision (GPU JPEG) decoder carry their own key, their pixels differ from PIL's by
    a level or two."""
    extractor = build_classifier(get_preset("model1", len(prep.index.classes), fc_width(prep.backbone_state)),
                                 prep.backbone_state).to(prep.device)
    extractor = extractor.to(memory_format=engine.memory_format(prep.device))     # see compute_features
    everything = _all_samples(prep.index)
    path = feature_cache_path(prep.runs_dir, prep.index.fingerprint, backbone_id(prep.backbone.to_dict()),
                              image_size, prep.image_decoder, prep.device)
    fs = cached_features(extractor, everything,
                         lambda ss: cached_pose_dataset(ss, all_samples=everything,
                                                        fingerprint=prep.index.fingerprint,
                                                        image_size=image_size, margin=margin,
                                                        runs_dir=prep.runs_dir, progress=progress,
                                                        decoder=prep.image_decoder, device=prep.device),
                         path=path, device=prep.device, batch_size=batch_size, progress=progress,
                         on_progress=on_progress)
    out, start = {}, 0
    for name in ("train", "val", "test"):
        n = len(prep.index.splits.get(name, []))
        out[name] = fs.rows(start, start + n)
        start += n
    return out


# ----------------------------------------------------------------------------- entry points

def train_classifier(job: ClassifierJob) -> Path:
    """Train the job's one preset with its one seed; returns the run folder."""
    if len(job.presets) != 1 or len(job.seeds) != 1:
        raise RunError(None, f"train_classifier runs one preset with one seed (got presets {list(job.presets)}, "
                             f"seeds {list(job.seeds)}); use train_classifier_grid for more")
    return train_classifier_grid(job)[0]


def train_classifier_grid(job: ClassifierJob, on_progress: Callable[[float, str], None] | None = None) -> list[Path]:
    """Every preset of ``job`` once per seed, with ONE shared feature pass (the features do
    not depend on the seed; each seed has its own validation split). Returns the run
    folders, seed-major. ``on_progress(fraction, message)`` follows the grid: the feature
    pass is the first half, the runs share the second."""
    presets = list(job.presets)
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise RunError(None, f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    if job.keypoints not in KEYPOINT_SOURCES:
        raise RunError(None, f"unknown keypoint source {job.keypoints!r}; choose from {', '.join(KEYPOINT_SOURCES)}")
    if not job.seeds:
        raise RunError(None, "no seeds to train with")
    dev, progress = engine.setup(job.device, job.progress)
    recipe = job.recipe
    out, total = [], len(presets) * len(job.seeds)
    for k, seed in enumerate(job.seeds):
        prep = _prepare(job, seed=seed, device=dev)
        if job.init_from is not None:      # fail before the long feature pass, not after it
            _check_init_from(Path(job.init_from), list(prep.index.classes))
        if recipe.feature_cache and any(PRESETS[p].feature_cacheable for p in presets):
            t0 = time.perf_counter()
            prep.features = _shared_features(
                prep, image_size=recipe.image_size, batch_size=recipe.batch_size, margin=recipe.margin,
                progress=progress and k == 0,
                on_progress=None if on_progress is None or k else (lambda f, m: on_progress(0.5 * f, m)))
            prep.phase_seconds["features"] = round(time.perf_counter() - t0, 3)
        if job.keypoints == "estimated" and any(PRESETS[p].use_keypoints for p in presets):
            t0 = time.perf_counter()
            _estimate_keypoints(prep, margin=recipe.margin, progress=progress and k == 0)
            prep.phase_seconds["estimate_keypoints"] = round(time.perf_counter() - t0, 3)
        _report(on_progress, 0.5, "features ready")
        for name in presets:
            cfg = get_preset(name, len(prep.index.classes), fc_width(prep.backbone_state))
            out.append(_run_preset(name, cfg, replace(recipe, epochs=recipe.epochs if cfg.trained else 0), prep,
                                   seed=seed, job=job, progress=progress))
            _report(on_progress, 0.5 + 0.5 * len(out) / total, f"trained {name} (seed {seed})")
    return out


def _report(on_progress, fraction: float, message: str) -> None:
    if on_progress is not None:
        on_progress(fraction, message)


# ----------------------------------------------------------------------------- one preset

def _run_info(name: str, cfg: ClassifierConfig, tcfg: TrainConfig, prep: _Prepared, *, seed: int,
              init_from, use_features: bool) -> RunInfo:
    index = prep.index
    data = DataInfo(root=str(Path(index.root).resolve()), sources=[str(s) for s in index.sources],
                    fingerprint=index.fingerprint, classes=list(index.classes),
                    num_train=len(index.splits.get("train", [])), num_val=len(index.splits.get("val", [])),
                    num_test=len(index.splits.get("test", [])), skipped=dict(index.skipped or {}),
                    keypoint_source=prep.keypoints if cfg.use_keypoints else None,
                    keypoint_estimator=model_version() if cfg.use_keypoints and prep.keypoints == "estimated" else None,
                    keypoints_found=prep.found if cfg.use_keypoints and prep.keypoints == "estimated" else None)
    return RunInfo(kind="classifier", name=name, config={"model": cfg.to_dict(), "train": asdict(tcfg)},
                   data=data, backbone=prep.backbone, seed=seed, device=str(prep.device),
                   feature_cache=use_features, init_from=str(init_from) if init_from else None,
                   image_decoder=prep.image_decoder, distributed=D.describe(),
                   phase_seconds=dict(prep.phase_seconds))


def _batches(cfg: ClassifierConfig, tcfg: TrainConfig, prep: _Prepared, seed: int) -> tuple[dict, bool]:
    """split -> Batches, and whether they come from cached features."""
    use_features = prep.features is not None and tcfg.feature_cache and cfg.feature_cacheable
    sets = prep.features if use_features else _image_sets(prep, tcfg)
    if cfg.use_keypoints and prep.keypoints == "estimated":    # the same samples, the estimator's keypoints
        sets = {k: sets[k].with_keypoints(torch.from_numpy(model_input(prep.estimated[k])))
                for k in ("train", "val", "test")}
    return {k: Batches(sets[k], tcfg.batch_size, prep.device, shuffle=(k == "train"), seed=seed)
            for k in ("train", "val", "test")}, use_features


def _run_preset(name: str, cfg: ClassifierConfig, tcfg: TrainConfig, prep: _Prepared, *, seed: int,
                job: ClassifierJob, progress: bool) -> Path:
    """One run: data, model, loss and metric are the classifier's; the rest is the lifecycle."""
    batches, use_features = _batches(cfg, tcfg, prep, seed)
    info = _run_info(name, cfg, tcfg, prep, seed=seed, init_from=job.init_from, use_features=use_features)
    with engine.RunLifecycle.open(prep.runs_dir, info, HISTORY_COLUMNS, reuse_finished=job.reuse_finished) as run:
        if run.reused is not None:
            return run.reused
        # Seed the head's init here: the same preset and seed give the same run whether it is
        # trained alone, inside a grid, on cached features or through the backbone.
        torch.manual_seed(seed)
        model = build_classifier(cfg, prep.backbone_state)
        if job.init_from is not None:
            init = Path(job.init_from) / WEIGHTS
            load_trained_weights(model, load_weights(init), init)
        if run.resumed_model is not None:
            load_trained_weights(model, run.resumed_model, run.writer.last)
        model = model.to(prep.device)
        if not use_features:
            model = model.to(memory_format=engine.memory_format(prep.device))

        t0 = time.perf_counter()
        state = run.state
        if tcfg.epochs > 0:
            train_model = D.wrap_ddp(model, prep.device, ENTRIES)
            optimizer, scheduler = make_optimizer(model, tcfg)
            # a head on cached features is small ops: one CPU thread (engine.threads)
            with engine.threads(prep.device, 1 if use_features else torch.get_num_threads()):
                state = engine.fit(engine.FitPlan(
                    optimizer=optimizer, scheduler=scheduler, epochs=tcfg.epochs, seed=seed, metric="acc",
                    batches=batches["train"], weights=model.trainable_state_dict,
                    train_epoch=lambda e: train_one_epoch(train_model, batches["train"], optimizer, prep.device,
                                                          progress=progress, desc=f"epoch {e}"),
                    evaluate=lambda e: evaluate(model, batches["val"], prep.device)),
                    state, on_epoch=run.epoch_writer(model.trainable_state_dict), progress=progress)
        t1 = time.perf_counter()
        if state.best_weights is not None:
            load_trained_weights(model, state.best_weights, run.path / WEIGHTS)
        else:                                  # untrained baseline: its random head is the "weights"
            run.writer.write_weights(model.trainable_state_dict())
        val = evaluate(model, batches["val"], prep.device)
        test = evaluate(model, batches["test"], prep.device, progress=progress, desc="test")
        estimated = prep.estimated["test"] if cfg.use_keypoints and prep.keypoints == "estimated" else None
        run.writer.write_table(PREDICTIONS, predictions_frame(prep.index, test, estimated, margin=tcfg.margin))
        run.add_seconds(train=t1 - t0)
        run.info.phase_seconds["evaluate"] = round(time.perf_counter() - t1, 3)
        return run.finish(_metrics(cfg, state, val, test))


def _metrics(cfg: ClassifierConfig, state: engine.FitState, val: ClassifierEval, test: ClassifierEval) -> dict:
    cm = confusion_matrix(test.probs.argmax(1), test.labels, cfg.num_classes)
    f1 = per_class_report(cm)["f1"]
    return {"headline": "test_acc", "test_acc": test.acc, "test_loss": test.loss,
            "val_acc": val.acc, "val_loss": val.loss, "best_epoch": state.best_epoch,
            "test_macro_f1": float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan"),
            "num_test": int(len(test.labels)), "epochs_run": engine.trained_epochs(state)}


def _check_init_from(path: Path, classes: list[str]) -> None:
    run = load_run(path, require_finished=True)
    if run.kind != "classifier":
        raise RunError(path, f"--init-from needs a classifier run, this one is {run.kind!r}")
    theirs = run.info.data.classes
    if theirs != classes:
        raise RunError(path / RUN_JSON, f"run's classes {theirs} differ from the dataset's {classes}")


def predictions_frame(index: PoseIndex, test: dict, estimated: np.ndarray | None = None, *,
                      margin: float = 0.15) -> pd.DataFrame:
    """predictions.parquet: one row per test sample, columns of the run-folder contract;
    with ``estimated`` (N, 17, 3) crop-convention keypoints, an ``estimated_keypoints``
    column in scene pixels beside the annotation's ``keypoints``."""
    samples = index.splits.get("test", [])
    classes = list(index.classes)
    probs, labels = test.probs, test.labels
    pred = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    df = pd.DataFrame([_sample_columns(s) for s in samples],
                      columns=["sample_id", "image_path", "image_id", "person_index", "bbox", "keypoints"])
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
    if estimated is not None:
        df["estimated_keypoints"] = [scene_keypoints(s, kp, margin).ravel().tolist() for s, kp in zip(samples, estimated)]
    if any(s.segmentation for s in samples):       # the person's outline, for saliency inside it
        df["segmentation"] = [[list(p) for p in s.segmentation] if s.segmentation else None for s in samples]
    return df


def _sample_columns(s) -> dict:
    return {"sample_id": str(s.sample_id), "image_path": str(s.rel_path), "image_id": s.image_id,
            "person_index": int(s.person_index), "bbox": [float(v) for v in s.bbox],
            "keypoints": [float(v) for v in np.asarray(s.keypoints, dtype=np.float64).ravel()]}
