"""End-to-end temporal training on a tiny synthetic sequence dataset (real data path)."""
import json

import numpy as np
import pytest
import torch

from core import cli
from core.errors import RunError, TrainingError
from core.keypoints import TEMPORAL25
from core.models import load_model
from core.runs import list_runs, load_run, load_weights
from core.temporal.models import BASELINES, build_temporal, make_config
from core.temporal.train import (
    ModelPlan,
    TemporalJob,
    TrainConfig,
    default_recipe,
    fit,
    train_one_epoch,
    train_temporal,
    train_temporal_grid,
)

SMALL = {  # narrow models: same code paths, a fraction of the time
    "conv3d": dict(hidden=8),
    "deciwatch": dict(embed_dim=16, heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1),
    "convlstm-sum": dict(hidden=6),
    "convlstm-concat": dict(hidden=6),
}


def job(data, runs_dir, *archs, epochs=2, init_from=None, **kw) -> TemporalJob:
    """A job of small models (every learned one and every baseline when none is named)."""
    archs = archs or (*SMALL, *BASELINES)
    plans = tuple(ModelPlan(a, SMALL.get(a, {}), default_recipe(a, epochs=epochs)) for a in archs)
    return TemporalJob(data=data, runs_dir=runs_dir, plans=plans, device="cpu", init_from=init_from,
                       progress=False, **kw)


PRED_COLUMNS = ["video", "frame", "keypoint", "keypoint_name", "gt_x", "gt_y", "visible",
                "input_x", "input_y", "pred_x", "pred_y", "norm", "error_px", "input_error_px"]


@pytest.fixture(scope="module")
def seq_data(tmp_path_factory):
    from core.temporal.synth import SequenceSpec, write_sequence_dataset
    out = tmp_path_factory.mktemp("seq") / "data"
    write_sequence_dataset(out, SequenceSpec(videos=6, frames=12, seed=0, heatmap=16, noise=1.0,
                                             estimator="simulated"), progress=False)
    return out


@pytest.fixture(scope="module")
def grid(seq_data, tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    paths = train_temporal_grid(job(seq_data, runs_dir))
    return runs_dir, paths


def test_grid_writes_a_valid_run_folder_per_model_and_baseline(grid):
    runs_dir, paths = grid
    runs = list_runs(runs_dir)
    assert sorted(r.name for r in runs) == sorted([*SMALL, *BASELINES])
    assert all(r.finished and r.kind == "temporal" for r in runs)
    for path in paths:
        run = load_run(path, require_finished=True)
        for f in ("run.json", "history.csv", "metrics.json", "predictions.parquet", "pck.csv",
                  "weights.safetensors"):
            assert (path / f).is_file(), f"{path.name}: {f} missing"
        m = run.metrics
        assert m["headline"] == "test_pck@0.05"
        for key in ("test_pck@0.05", "test_pck@0.1", "test_pck@0.2", "identity_pck@0.05",
                    "identity_pck@0.1", "identity_pck@0.2", "val_pck@0.05", "num_test_windows",
                    "best_epoch", "test_accel_error", "test_velocity_error", "test_jitter", "test_pck_auc",
                    "test_swapped_frames", "test_swap_tolerant_pck@0.05", "identity_accel_error",
                    "identity_jitter", "gt_jitter"):
            assert key in m, key
        assert m["test_swap_tolerant_pck@0.05"] >= m["test_pck@0.05"] and 0 <= m["test_pck_auc"] <= 1
        assert 0 <= m["test_pck@0.05"] <= m["test_pck@0.1"] <= m["test_pck@0.2"] <= 1
        info = json.loads((path / "run.json").read_text())   # the on-disk contract
        assert info["config"]["model"]["arch"] == run.name
        assert info["data"]["keypoints"] == list(TEMPORAL25) and info["data"]["num_test"] > 0
        hist = run.history()
        assert list(hist.columns) == ["epoch", "train_loss", "train_pck", "val_loss", "val_pck",
                                      "lr", "seconds"]
        pred = run.predictions()
        assert list(pred.columns) == PRED_COLUMNS
        assert len(pred) == m["num_test_windows"] * 5 * 25
        vis = pred["visible"].to_numpy()
        assert pred.loc[~vis, "error_px"].isna().all() and pred.loc[vis, "error_px"].notna().all()
        table = run.pck()
        assert list(table["keypoint"]) == [*TEMPORAL25, "threshold_px"]
        # the pooled headline equals the table's visible-weighted mean
        body = table.iloc[:25]
        pooled = np.nansum(body["pck@0.05"] * body["n_visible"]) / body["n_visible"].sum()
        assert m["test_pck@0.05"] == pytest.approx(pooled)
        # and it can be recomputed from predictions.parquet
        hit = (pred["error_px"] <= 0.05 * pred["norm"]) & vis & (pred["norm"] > 0)
        assert m["test_pck@0.05"] == pytest.approx(hit.sum() / (vis & (pred["norm"] > 0)).sum())


def test_identity_run_equals_the_estimator(grid):
    runs_dir, _ = grid
    ident = next(r for r in list_runs(runs_dir) if r.name == "identity")
    for a in ("0.05", "0.1", "0.2"):
        assert ident.metrics[f"test_pck@{a}"] == ident.metrics[f"identity_pck@{a}"]
    pred = ident.predictions()
    assert np.allclose(pred["pred_x"], pred["input_x"]) and np.allclose(pred["pred_y"], pred["input_y"])
    assert len(ident.history()) == 1 and ident.metrics["best_epoch"] == 0
    assert ident.metrics["test_jitter"] == ident.metrics["identity_jitter"]


def test_filters_are_tuned_on_validation_and_rebuilt_from_their_config(grid):
    runs_dir, _ = grid
    for name in BASELINES:
        if name == "identity":
            continue
        run = next(r for r in list_runs(runs_dir) if r.name == name)
        tuning = run.metrics["tuning"]
        assert len(tuning) >= 2                                 # several candidates were scored
        best = max(t["val_pck@0.05"] for t in tuning)
        chosen = {k: v for k, v in run.info.config["model"].items() if k in tuning[0]}
        assert next(t for t in tuning if all(t[k] == v for k, v in chosen.items()))["val_pck@0.05"] == best
        assert run.metrics["epochs_run"] == 0 and not (run.path / "last.safetensors").exists()


def test_load_model_rebuilds_identical_outputs(grid):
    runs_dir, _ = grid
    x = torch.rand(2, 5, 25, 16, 16)
    for run in list_runs(runs_dir):
        model = load_model(run)
        assert not model.training
        again = load_model(run.path)
        with torch.no_grad():
            assert torch.equal(model(x), again(x))


def test_init_from_round_trip_and_mismatch(grid, seq_data, tmp_path):
    runs_dir, _ = grid
    src = next(r for r in list_runs(runs_dir) if r.name == "conv3d")
    # 0 epochs: evaluated only, so the new run's weights are exactly the source's
    dst = train_temporal(job(seq_data, tmp_path, "conv3d", epochs=0, init_from=src.path))
    a, b = load_weights(src.path / "weights.safetensors"), load_weights(dst / "weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    info = json.loads((dst / "run.json").read_text())
    assert info["init_from"] == str(src.path)
    assert info["config"]["model"] == src.info.config["model"]      # architecture comes from the source
    assert info["config"]["train"]["lr"] == 1e-4                     # fine-tuning default
    assert load_run(dst).metrics["test_pck@0.05"] == src.metrics["test_pck@0.05"]
    with pytest.raises(RunError, match="deciwatch"):
        train_temporal(job(seq_data, tmp_path, "deciwatch", epochs=1, init_from=src.path))
    # a weights file that does not fit the recorded config
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("run.json", "metrics.json"):
        (bad / f).write_bytes((src.path / f).read_bytes())
    from core.runs import save_weights
    save_weights(bad / "weights.safetensors", {"net.0.weight": torch.zeros(1)})
    with pytest.raises(RunError, match="do not fit"):
        train_temporal(job(seq_data, tmp_path, "conv3d", epochs=1, init_from=bad))


def _loader(seq_data, split="train"):
    from torch.utils.data import DataLoader

    from core.temporal.sequences import load_sequences
    from core.temporal.windows import WindowDataset
    index = load_sequences(seq_data)
    return DataLoader(WindowDataset(index.splits[split], k=5, stride=1), batch_size=8)


def test_nan_loss_raises_training_error_and_leaves_run_unfinished(seq_data, tmp_path, monkeypatch):
    model = build_temporal(make_config("conv3d", **SMALL["conv3d"]))
    with torch.no_grad():
        model.net[-1].bias.fill_(float("nan"))
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(TrainingError, match="nan"):
        train_one_epoch(model, _loader(seq_data), opt, torch.device("cpu"))

    import core.temporal.train as tt
    real_build = tt.build_temporal

    def poisoned(cfg):
        m = real_build(cfg)
        with torch.no_grad():
            m.net[-1].bias.fill_(float("nan"))
        return m
    monkeypatch.setattr(tt, "build_temporal", poisoned)
    with pytest.raises(TrainingError):
        train_temporal(job(seq_data, tmp_path, "conv3d", epochs=1))
    (run,) = list_runs(tmp_path)
    assert run.status == "unfinished"


def test_training_lowers_the_loss_and_early_stopping(seq_data):
    torch.manual_seed(0)
    loader = _loader(seq_data)
    for arch in ("conv3d", "deciwatch"):
        model = build_temporal(make_config(arch, **SMALL[arch]))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        losses = [train_one_epoch(model, loader, opt, torch.device("cpu")).loss for _ in range(4)]
        assert losses[-1] < losses[0], (arch, losses)
    # lr 0: validation PCK can never beat the untrained model (epoch 0), so patience 1
    # stops after epoch 1 and keeps epoch 0
    model = build_temporal(make_config("conv3d", **SMALL["conv3d"]))
    cfg = TrainConfig(epochs=10, lr=0.0, early_stop_patience=1)
    res = fit(model, {"train": loader, "val": _loader(seq_data, "val")}, cfg, torch.device("cpu"), progress=False)
    assert res.stopped_early and [r["epoch"] for r in res.history] == [0, 1] and res.best_epoch == 0


def test_cli_bad_data_exits_2_without_writing(tmp_path, capsys):
    runs = tmp_path / "runs"
    rc = cli.main(["train", "temporal", "--data", str(tmp_path / "nope"), "--arch", "conv3d",
                   "--runs", str(runs), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nope" in err
    assert not runs.exists() or not any(runs.iterdir())
    rc = cli.main(["grid", "temporal", "--data", str(tmp_path / "nope"), "--runs", str(runs)])
    assert rc == 2


def test_demo_part_progress_and_reuse(tmp_path, monkeypatch):
    from core import demo
    monkeypatch.setattr(demo, "DEMO_SEQUENCES", demo.SequenceSpec(videos=5, frames=10, heatmap=16,
                                                                 estimator="blazepose", image_size=(128, 96)))
    monkeypatch.setattr(demo, "DEMO_PLANS", tuple(ModelPlan(a, SMALL.get(a, {}), default_recipe(a, epochs=1, train_stride=2))
                                                  for a in (*SMALL, *BASELINES)))
    seen = []
    paths = demo.build_temporal_demo(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
                                   device="cpu", report=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.7 and fractions[-1] == 1.0
    assert sorted(r.name for r in list_runs(tmp_path / "runs")) == sorted([*SMALL, *BASELINES])
    # a second call reuses the data and every finished run instead of training again
    again = demo.build_temporal_demo(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
                                   device="cpu")
    assert again == paths and len(list_runs(tmp_path / "runs")) == len(SMALL) + len(BASELINES)


def test_killed_run_resumes_to_the_same_result(seq_data, tmp_path):
    unbroken = train_temporal(job(seq_data, tmp_path / "a", "deciwatch", epochs=3))

    def kill_after_2(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_temporal(job(seq_data, tmp_path / "b", "deciwatch", epochs=3), on_epoch=kill_after_2)
    (killed,) = list_runs(tmp_path / "b")
    assert killed.status == "unfinished" and (killed.path / "last.safetensors").is_file()
    resumed = train_temporal(job(seq_data, tmp_path / "b", "deciwatch", epochs=3))
    assert resumed == killed.path and not (resumed / "last.safetensors").exists()
    run = load_run(resumed, require_finished=True)
    assert run.info.resumed_after_epoch == [2] and list(run.history()["epoch"]) == [0, 1, 2, 3]
    a, b = load_weights(unbroken / "weights.safetensors"), load_weights(resumed / "weights.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert run.metrics["test_pck@0.05"] == load_run(unbroken).metrics["test_pck@0.05"]


def test_frames_stay_in_host_memory_when_they_would_crowd_the_gpu(monkeypatch, capsys):
    """On CUDA the windows' frames move to the GPU only while they take at most half of
    its free memory (the rest is for the model); larger sets are gathered on the host."""
    from core.temporal.train import _frames_fit_on
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * 2**30, 80 * 2**30))
    assert _frames_fit_on(cuda, 4 * 2**30)
    assert not _frames_fit_on(cuda, 6 * 2**30)
    assert "keeping them in host memory" in capsys.readouterr().out
    assert not _frames_fit_on(torch.device("cpu"), 1)
