"""torchrun on CPU (gloo): two processes give the single-process run, and only rank 0 writes.

The end-to-end test launches ``python -m torch.distributed.run --nproc_per_node 2 -m core
grid classifier ...`` on a tiny synthetic dataset and compares every run folder with the
single-process grid of the same call (see core/distributed.py for what "equal up to
float noise" requires: presets with dropout are equal in distribution only).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import distributed as D  # noqa: E402
from core import runs as R  # noqa: E402

NO_DROPOUT = ["baseline", "model1", "model2", "model4"]
WITH_DROPOUT = ["model6"]
THROUGH_BACKBONE = ["model4-layer4"]   # trains layer4: images from the image cache, per-rank BN


# ----------------------------------------------------------------------------- units

@pytest.mark.parametrize("n,w", [(0, 2), (1, 2), (7, 2), (8, 3), (25, 4)])
def test_shard_range_partitions_in_order(n, w):
    parts = [D.shard_range(n, r, w) for r in range(w)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_global_batches_shards_rebuild_the_single_process_batches():
    """The one sharding rule of both tasks: the ranks' slices of each step concatenate to
    the single-process batch; a rank whose slice is empty gets one index marked padding."""
    n, bs, w = 23, 8, 2
    single = [idx.tolist() for idx, pad in D.GlobalBatches(n, bs, shuffle=True, seed=5)]
    assert sorted(sum(single, [])) == list(range(n)) and not any(
        pad for _, pad in D.GlobalBatches(n, bs, shuffle=True, seed=5))
    per_rank = [list(D.GlobalBatches(n, bs, shuffle=True, seed=5, rank_=r, world=w)) for r in range(w)]
    assert [len(p) for p in per_rank] == [len(single)] * w      # every rank takes every step
    assert [a[0].tolist() + b[0].tolist() for a, b in zip(*per_rank)] == single
    assert [len(b[0]) for b in per_rank[0]] == [4, 4, 4] and [len(b[0]) for b in per_rank[1]] == [4, 4, 3]
    third = [list(D.GlobalBatches(n, bs, shuffle=True, seed=5, rank_=r, world=8)) for r in range(8)]
    last = [rank[-1] for rank in third]                          # 7 samples for 8 ranks
    assert sum(pad for _, pad in last) == 1 and sum(len(i) for i, pad in last if not pad) == 7


def test_global_mean_is_the_single_process_mean_in_one_process():
    share, counted = D.global_mean(torch.tensor([6.0, 0.0]), torch.tensor([3.0, 0.0]))
    assert share.tolist() == [2.0, 0.0] and counted.tolist() == [3.0, 0.0]


def test_helpers_are_no_ops_in_one_process():
    assert not D.is_distributed() and D.is_main_process() and D.world_size() == 1
    t = torch.arange(6.0).reshape(3, 2)
    assert D.all_gather_cat(t) is t
    assert D.all_reduce_sum(1, 2.5) == (1.0, 2.5)
    assert D.broadcast_object({"a": 1}) == {"a": 1}
    model = torch.nn.Linear(2, 2)
    assert D.wrap_ddp(model, torch.device("cpu"), ("forward", "forward_head")) is model
    assert D.unwrap(model) is model
    D.barrier()
    with D.main_process_first():
        pass


# ----------------------------------------------------------------------------- end to end

def _runs_by_name(runs_dir: Path, kind: str = "classifier") -> dict[str, Path]:
    """name (preset / arch) -> run folder; every run finished, one folder per name."""
    runs = R.list_runs(runs_dir, kind)
    assert all(r.finished for r in runs), [r.path for r in runs if not r.finished]
    names = [r.name for r in runs]
    assert len(names) == len(set(names)), f"more than one run folder per name: {names}"
    return {r.name: r.path for r in runs}


@pytest.fixture(scope="module")
def two_grids(tmp_path_factory):
    from core.classification.train import ClassifierJob, TrainConfig, train_classifier_grid
    from core.synthetic.images import ImageSpec, write_image_dataset
    root = tmp_path_factory.mktemp("ddp")
    data = root / "data"
    # 10 scenes -> 17 training people: with --batch-size 6 the last global batch holds 5,
    # split 3 + 2, so the weighted all-reduce of uneven shares is exercised.
    write_image_dataset(data, ImageSpec(n_train=10, n_test=4, seed=0, size=64, people_max=2), progress=False)
    presets = NO_DROPOUT + WITH_DROPOUT + THROUGH_BACKBONE
    args = ["--data", str(data), "--epochs", "2", "--device", "cpu", "--batch-size", "6", "--image-size", "64",
            "--presets", ",".join(presets)]
    env = {**os.environ, "POSELAB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--standalone", "-m", "core", "grid", "classifier",
                           "--runs", str(root / "ddp"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The single-process grid reuses the torchrun run's backbone and feature cache, so the
    # comparison isolates the DDP training (the sharded feature pass is compared on its own
    # below: oneDNN convolutions differ in the last bits with batch size and thread count).
    for sub in ("_backbones", "_cache"):          # _backbones only for a random init
        if (root / "ddp" / sub).is_dir():
            shutil.copytree(root / "ddp" / sub, root / "single" / sub)
    train_classifier_grid(ClassifierJob(data=data, runs_dir=root / "single", presets=tuple(presets), device="cpu",
                                        recipe=TrainConfig(epochs=2, batch_size=6, image_size=64), progress=False))
    return root / "single", root / "ddp"


def test_sharded_feature_pass_equals_one_process_pass(two_grids):
    from core.classification.backbones import load_backbone
    from core.classification.crops import PoseDataset
    from core.classification.dataset import load_infiniteform
    from core.classification.features import _read, compute_features
    from core.classification.model import build_classifier, fc_width, get_preset
    single, ddp = two_grids
    run = _runs_by_name(ddp)["model1"]
    info = json.loads((run / "run.json").read_text())
    index = load_infiniteform(info["data"]["root"])
    samples = [s for k in ("train", "val", "test") for s in index.splits[k]]
    weights = load_backbone(info["backbone"], runs_dir=ddp, where=run)
    cfg = get_preset("model1", info["config"]["model"]["num_classes"], fc_dim=fc_width(weights))
    model = build_classifier(cfg, weights)
    ref = compute_features(model, PoseDataset(samples, image_size=64), device=torch.device("cpu"),
                           progress=False)
    (cache_file,) = (ddp / "_cache" / "features").glob("*.safetensors")
    keys, got = _read(cache_file)
    assert keys == [str(s.sample_id) for s in samples]          # rank order = sample order
    torch.testing.assert_close(got.features, ref.features, rtol=1e-4, atol=1e-3)
    assert torch.equal(got.labels, ref.labels) and torch.equal(got.keypoints, ref.keypoints)


def test_torchrun_grid_writes_one_run_per_preset_from_rank_0_only(two_grids):
    single, ddp = two_grids
    runs = _runs_by_name(ddp)
    assert sorted(runs) == sorted(NO_DROPOUT + WITH_DROPOUT + THROUGH_BACKBONE)
    assert not [p for p in ddp.iterdir() if p.name.startswith(".")]      # no temp leftovers
    # rank 1 wrote into a private scratch folder that is gone
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("poselab-rank1-*/*"))


@pytest.mark.parametrize("preset", NO_DROPOUT)
def test_torchrun_run_equals_single_process_run(two_grids, preset):
    single, ddp = (_runs_by_name(d)[preset] for d in two_grids)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (single, ddp))
    assert a.keys() == b.keys() and a["best_epoch"] == b["best_epoch"]
    for k, v in a.items():
        if isinstance(v, float):
            # Losses are unbounded (~30 for model2's trainable 2048->1000 fc on a random
            # backbone): relative tolerance; fractions: 1e-5 absolute.
            tol = dict(rel=1e-5) if k.endswith("loss") else dict(abs=1e-5)
            assert b[k] == pytest.approx(v, nan_ok=True, **tol), k
    ia, ib = (json.loads((d / "run.json").read_text()) for d in (single, ddp))
    assert ia["config"] == ib["config"]         # same global batch size recorded
    ha, hb = (pd.read_csv(d / "history.csv") for d in (single, ddp))
    cols = ["train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    np.testing.assert_allclose(ha[cols].to_numpy(float), hb[cols].to_numpy(float), rtol=1e-5, atol=1e-5)
    pa, pb = (pd.read_parquet(d / "predictions.parquet") for d in (single, ddp))
    assert pa["sample_id"].tolist() == pb["sample_id"].tolist()
    assert pa["pred"].tolist() == pb["pred"].tolist()
    probs = [c for c in pa.columns if c.startswith("prob_")]
    np.testing.assert_allclose(pa[probs].to_numpy(), pb[probs].to_numpy(), rtol=1e-5, atol=1e-5)
    wa, wb = R.load_weights(single / R.WEIGHTS), R.load_weights(ddp / R.WEIGHTS)
    assert wa.keys() == wb.keys()
    for k in wa:
        # Adam divides by sqrt(v) + 1e-8: a weight whose gradient is ~1e-8 turns rounding
        # noise into steps of a few % of lr (1e-3), hence 1e-4 absolute (seen: 3e-5 on 1-2 of 2M).
        torch.testing.assert_close(wb[k], wa[k], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("preset", WITH_DROPOUT + THROUGH_BACKBONE)
def test_torchrun_dropout_and_backbone_presets_are_finished_and_well_formed(two_grids, preset):
    """Dropout masks are drawn per rank, and a preset that trains layer4 computes its
    BatchNorm statistics per rank: not bit-equal, but complete runs of the same call (the
    latter reading its batches from the image cache through the sharded sampler)."""
    single, ddp = (_runs_by_name(d)[preset] for d in two_grids)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (single, ddp))
    assert a.keys() == b.keys() and 0.0 <= b["test_acc"] <= 1.0
    assert b["num_test"] == a["num_test"]
    history = pd.read_csv(ddp / "history.csv")       # epoch 0 (untrained) + 2 epochs
    assert list(history["epoch"]) == [0, 1, 2] and history["train_loss"].isna().tolist() == [True, False, False]
    info = json.loads((ddp / "run.json").read_text())
    assert info["feature_cache"] is (preset not in THROUGH_BACKBONE)
    assert info["distributed"] == {"world_size": 2, "backend": "gloo"}
    pa, pb = (pd.read_parquet(d / "predictions.parquet") for d in (single, ddp))
    assert pa["sample_id"].tolist() == pb["sample_id"].tolist()


# ----------------------------------------------------------------------------- temporal

TEMPORAL_EQUAL = ["conv3d", "convlstm-sum", "identity"]    # no dropout: equal to float noise


def test_window_batches_shards_rebuild_the_single_process_batches():
    """Training: the ranks' slices of each step concatenate to the single-process batch,
    and a rank with an empty slice gets a padding window that counts for nothing.
    Evaluation: contiguous shares that concatenate to all windows, in order."""
    from core.temporal.windows import WindowBatches

    class Windows:                       # the part of WindowDataset WindowBatches uses
        def __len__(self):
            return 13

        def get_batch(self, idx):
            idx = np.asarray(idx)
            return {"index": torch.from_numpy(idx), "visible": torch.ones(len(idx), 5, 3, dtype=torch.bool)}

    ds, bs, w = Windows(), 4, 3                             # 13 = 3 x 4 + 1: last batch of 1 for 3 ranks
    single = [b["index"].tolist() for b in WindowBatches(ds, bs, shuffle=True, seed=7)]
    ranks = [WindowBatches(ds, bs, shuffle=True, seed=7, rank=r, world=w) for r in range(w)]
    per_rank = [list(r) for r in ranks]
    assert [len(p) for p in per_rank] == [len(single)] * w
    for step, expected in enumerate(single):
        real = [p[step] for p in per_rank if p[step].get("samples", 1)]
        assert sum((b["index"].tolist() for b in real), []) == expected
    pads = [p[-1] for p in per_rank if p[-1].get("samples", 1) == 0]
    assert len(pads) == 2 and all(not b["visible"].any() for b in pads)
    evals = [WindowBatches(ds, bs, rank=r, world=w) for r in range(w)]
    assert all(e.sharded for e in evals)
    assert sum((b["index"].tolist() for e in evals for b in e), []) == list(range(13))
    assert not WindowBatches(ds, bs, rank=0, world=20).sharded   # fewer windows than ranks


@pytest.fixture(scope="module")
def two_temporal_grids(tmp_path_factory):
    from core.temporal.sequences import load_sequences
    from core.temporal.synth import SequenceSpec, write_sequence_dataset
    from core.temporal.train import ModelPlan, TemporalJob, default_recipe, train_temporal_grid
    from core.temporal.windows import make_window_datasets
    root = tmp_path_factory.mktemp("ddp_temporal")
    data = root / "data"
    write_sequence_dataset(data, SequenceSpec(videos=6, frames=13, seed=0, heatmap=16, noise=1.0,
                                              estimator="simulated"), progress=False)
    n_train = len(make_window_datasets(load_sequences(data))["train"])
    # a batch size that leaves one window in the last global batch: rank 1 then holds
    # a padding share, the case the global loss denominators must get right
    bs = next(b for b in range(4, 12) if n_train % b == 1)   # 36 windows: 5
    archs = ["conv3d", "deciwatch", "convlstm-sum"]
    env = {**os.environ, "POSELAB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--standalone", "-m", "core", "grid", "temporal", "--data", str(data),
                           "--runs", str(root / "ddp"), "--archs", ",".join(archs), "--epochs", "3",
                           "--batch-size", str(bs), "--device", "cpu"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)             # like each torchrun rank
    try:
        plans = tuple(ModelPlan(a, recipe=default_recipe(a, epochs=3, batch_size=bs)) for a in archs)
        train_temporal_grid(TemporalJob(data=data, runs_dir=root / "single", plans=plans, device="cpu",
                                        progress=False))
    finally:
        torch.set_num_threads(threads)
    return root / "single", root / "ddp"


def test_torchrun_temporal_grid_writes_one_run_per_arch_from_rank_0_only(two_temporal_grids):
    single, ddp = two_temporal_grids
    runs = _runs_by_name(ddp, "temporal")
    assert sorted(runs) == sorted(["conv3d", "deciwatch", "convlstm-sum", "identity"])
    assert not [p for p in ddp.iterdir() if p.name.startswith(".")]
    info = json.loads((runs["conv3d"] / "run.json").read_text())
    assert info["distributed"] == {"world_size": 2, "backend": "gloo"}
    from core.classification.report import runs_table  # the dashboard's Runs table says so
    assert runs_table(R.list_runs(ddp))["processes"].tolist() == [2] * len(runs)
    assert runs_table(R.list_runs(single))["processes"].tolist() == [1] * len(runs)
    # deciwatch draws its dropout per rank: a complete run, equal in distribution only
    a, b = (json.loads((_runs_by_name(d, "temporal")["deciwatch"] / "metrics.json").read_text())
            for d in two_temporal_grids)
    assert a.keys() == b.keys() and b["num_test_frames"] == a["num_test_frames"]
    assert 0.0 <= b["test_pck@0.05"] <= 1.0 and b["epochs_run"] == 3


@pytest.mark.parametrize("arch", TEMPORAL_EQUAL)
def test_torchrun_temporal_run_equals_single_process_run(two_temporal_grids, arch):
    single, ddp = (_runs_by_name(d, "temporal")[arch] for d in two_temporal_grids)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (single, ddp))
    assert a.keys() == b.keys() and a["best_epoch"] == b["best_epoch"]
    for k, v in a.items():
        if isinstance(v, float):
            tol = dict(rel=1e-4) if k.endswith("loss") else dict(abs=1e-5)
            assert b[k] == pytest.approx(v, nan_ok=True, **tol), k
    ha, hb = (pd.read_csv(d / "history.csv") for d in (single, ddp))
    cols = ["train_loss", "train_pck", "val_loss", "val_pck", "lr"]
    np.testing.assert_allclose(ha[cols].to_numpy(float), hb[cols].to_numpy(float), rtol=1e-4, atol=1e-6)
    pa, pb = (pd.read_parquet(d / "predictions.parquet") for d in (single, ddp))
    assert pa[["video", "frame", "keypoint"]].equals(pb[["video", "frame", "keypoint"]])
    np.testing.assert_allclose(pa[["pred_x", "pred_y"]].to_numpy(), pb[["pred_x", "pred_y"]].to_numpy(),
                               atol=1e-3)
    pd.testing.assert_frame_equal(pd.read_csv(single / "pck.csv"), pd.read_csv(ddp / "pck.csv"),
                                  atol=1e-5)
    wa, wb = R.load_weights(single / R.WEIGHTS), R.load_weights(ddp / R.WEIGHTS)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], atol=1e-4, rtol=1e-4)
