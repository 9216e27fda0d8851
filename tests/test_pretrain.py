"""python -m core pretrain on tiny renders: the shipped-backbone format (fp16 safetensors
+ card), a resumed run, and the weights as a classifier's backbone."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from core import engine
from core.classification import backbones
from core.classification import pretrain as P
from core.classification.pretrain_data import PRETRAIN_SEED, Crops, DataConfig, remove_person, render_data
from core.errors import DataError
from core.images import IMAGENET_STD
from core.keypoints import BODY_JOINTS, flip_permutation
from core.runs import list_runs
from core.synthetic.poses import CLASS_NAMES
from core.synthetic.pretrain_poses import PRETRAIN_CLASS_NAMES

DATA = DataConfig(scenes=12, image_size=32)
CFG = P.PretrainConfig(epochs=2, batch_size=8, bn_samples=16)


def job(out, **kw) -> P.PretrainJob:
    return P.PretrainJob(**{"out": out, "data": DATA, "train": CFG, "device": "cpu", "workers": 1,
                            "progress": False, **kw})


def test_pretraining_data_targets_and_flip(tmp_path):
    shards = render_data(DATA, tmp_path, workers=1, progress=False)
    crops = Crops(shards, val_fraction=0.2)
    assert len(crops) >= 12 and len(crops.val_rows) and len(crops.train_rows)
    rows = crops.train_rows[:4]
    x, tg = crops.batch(rows)
    assert x.shape == (4, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    assert tg["cam3d"].shape == (4, P.J, 3) and tg["label"].min() >= 0
    xf, tf = crops.batch(rows, flip=torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(xf, x.flip(-1))                       # mirrored pixels
    perm = torch.as_tensor(flip_permutation(BODY_JOINTS))
    torch.testing.assert_close(tf["canon3d"][:, :, 1:], tg["canon3d"][:, perm, 1:])   # left <-> right
    torch.testing.assert_close(tf["canon3d"][:, :, 0], -tg["canon3d"][:, perm, 0])
    again = render_data(DATA, tmp_path, workers=1, progress=False)  # rendered once
    assert again == shards
    # pixel noise: per-sample std up to the share given, seeded by the batch's generator
    xn, _ = crops.batch(rows, noise=0.1, gen=torch.Generator().manual_seed(3))
    again_n, _ = crops.batch(rows, noise=0.1, gen=torch.Generator().manual_seed(3))
    assert torch.equal(xn, again_n) and not torch.equal(xn, x)
    diff = (xn - x) * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255   # back in 0-255 units
    per_sample = diff.flatten(1).std(1)
    assert (per_sample <= 0.1 * 255 * 1.1).all() and per_sample.max() > 2
    assert torch.equal(crops.batch(rows, noise=0.0, gen=torch.Generator().manual_seed(3))[0], x)


def test_a_killed_pretraining_resumes_and_ships_a_backbone_with_its_card(tmp_path, monkeypatch):
    out = tmp_path / "_poselab" / "resnet50-test.safetensors"
    real = engine.EpochWriter.__call__

    def killed_after_epoch_1(self, state, improved):
        real(self, state, improved)
        if state.epoch == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(engine.EpochWriter, "__call__", killed_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        P.pretrain(job(out))
    assert not out.exists()
    monkeypatch.setattr(engine.EpochWriter, "__call__", real)
    card = P.pretrain(job(out, command=("python", "-m", "core", "pretrain", "--scenes", "12")))
    (run,) = list_runs(out.with_name(".resnet50-test.work") / "runs")
    assert run.finished and run.info.resumed_after_epoch == [1] and run.history()["epoch"].tolist() == [0, 1, 2]
    on_disk = json.loads(backbones.card_path(out).read_text())
    # the card lists every class and target trained on, none of them a demo class
    assert on_disk == card and card["task"] == "pose+classes" and card["class_family"] == "pretrain"
    assert card["classes"] == list(PRETRAIN_CLASS_NAMES) and not set(card["classes"]) & set(CLASS_NAMES)
    assert [t.split()[0] for t in card["targets"]] == ["cam3d", "canon3d", "kp2d", "vis"]
    assert card["sha256"] == backbones.sha256_file(out) and card["data"]["seed"] == 1_000_003
    assert card["command"].endswith("--scenes 12") and card["code_version"]
    assert set(card["held_out"]) >= {"cam3d_mpjpe_pct_height", "kp2d_error_pct_crop", "visibility_accuracy"}
    state = load_file(str(out))
    # the pretraining class head ships as the backbone's own fc: one logit per pretraining class
    assert state["conv1.weight"].dtype == torch.float16
    assert state["fc.weight"].shape == (len(PRETRAIN_CLASS_NAMES), 2048) and card["fc"].startswith("the pretraining")
    monkeypatch.setattr(backbones, "SHIPPED_DIR", out.parent)          # it is the shipped backbone now
    monkeypatch.setenv("POSELAB_OFFLINE", "1")
    got, info = backbones.resolve_backbone(None, runs_dir=tmp_path)
    assert info["source"] == "poselab" and info["card"]["sha256"] == card["sha256"]
    assert got["conv1.weight"].dtype == torch.float32


def test_pixel_noise_outside_its_range_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="pixel-noise"):
        P.pretrain(job(tmp_path / "b.safetensors", train=P.PretrainConfig(pixel_noise=-0.1)))


def test_background_swap_pastes_the_person_on_a_room_without_the_donors_person():
    # Two crops: a grey room with a red person, a blue room with a green person.
    x = torch.zeros(2, 3, 32, 32)
    x[0, 0], x[0, 1], x[0, 2] = 100, 100, 100
    x[1, 2] = 200
    m = torch.zeros(2, 1, 32, 32)
    m[0, :, 8:24, 10:20] = 1
    m[1, :, 4:30, 12:22] = 1
    x[0, :, 8:24, 10:20] = torch.tensor([255.0, 0, 0]).view(3, 1, 1)
    x[1, :, 4:30, 12:22] = torch.tensor([0, 255.0, 0]).view(3, 1, 1)
    room = remove_person(x, m)
    assert torch.allclose(room[0], torch.full_like(room[0], 100), atol=1e-3)     # no red left
    blue = torch.zeros(3, 32, 32)
    blue[2] = 200
    assert torch.allclose(room[1], blue, atol=1e-3)                                # no green left
    pasted = m[0] * x[0] + (1 - m[0]) * room[1]
    assert torch.equal(pasted[:, 8:24, 10:20], x[0, :, 8:24, 10:20])               # the person kept
    assert pasted[1].max() == 0                                                    # nobody else in it


def test_the_pretraining_seed_is_no_other_datasets_seed():
    """The renders' seed differs from every seed a demo, a default dataset or a test draws
    scenes with, so the backbone never saw a scene the demo scores."""
    import ast
    from pathlib import Path

    from core import demo
    from core.cli import build_parser
    assert DataConfig().seed == PRETRAIN_SEED and DataConfig().classes == "pretrain"
    parser = build_parser()
    defaults = {demo.DEMO_IMAGES.seed, 0,
                parser.parse_args(["synth", "images", "--out", "x"]).seed,
                parser.parse_args(["synth", "sequences", "--out", "x"]).seed}
    # every integer literal a test or bench passes as seed=...
    for path in [*Path(__file__).parent.glob("test_*.py"), *(Path(__file__).parent.parent / "bench").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "seed" and isinstance(node.value, ast.Constant):
                defaults.add(node.value.value)
    assert PRETRAIN_SEED not in defaults


def test_an_earlier_poselab_backbone_kept_as_a_file_keeps_its_card(tmp_path, monkeypatch):
    """The backbone before the current one stays usable: restored from the history as a
    file with its card beside it, --weights FILE reads both, and runs name it."""
    from core.runs import BackboneInfo
    monkeypatch.setenv("POSELAB_OFFLINE", "1")
    out = tmp_path / "old" / "resnet50-old.safetensors"
    card = P.pretrain(job(out, train=P.PretrainConfig(epochs=1, batch_size=8, bn_samples=16)))
    state, info = backbones.resolve_backbone(str(out), runs_dir=tmp_path)
    assert info["source"] == "file" and info["card"]["sha256"] == card["sha256"]
    b = BackboneInfo.from_dict(info)
    assert b.label == "PoseLab synthetic pretraining (file resnet50-old.safetensors)" and "rendered crops" in b.made
    backbones.card_path(out).write_text(json.dumps({**card, "sha256": "0" * 64}))
    with pytest.raises(DataError, match="does not match its card"):
        backbones.resolve_backbone(str(out), runs_dir=tmp_path)
