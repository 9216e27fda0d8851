"""core.classification.model and core.classification.backbones: presets, freezing, forward/backward,
backbone weight sources and their errors. CPU, 64 px images, batch 2."""
from __future__ import annotations

import hashlib

import pytest
import torch

from core.classification import backbones
from core.classification.model import (
    PAPER_PRESETS,
    PRESETS,
    ClassifierConfig,
    build_classifier,
    get_preset,
    load_trained_weights,
)
from core.errors import DataError, RunError


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("POSELAB_OFFLINE", "1")   # never try to download ImageNet weights


@pytest.fixture(scope="module")
def random_state(tmp_path_factory):
    """One seeded random ResNet-50 state for the whole module (stored once)."""
    return backbones.resolve_backbone("random", runs_dir=tmp_path_factory.mktemp("bb"), seed=0)[0]


def _batch(n=2, size=32):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=g)
    keypoints = torch.rand(n, 17, 3, generator=g)
    return images, keypoints


def test_paper_presets_match_design_table():
    assert PAPER_PRESETS == ("baseline", "model1", "model2", "model3", "model4", "model5", "model6")
    table = {  # preset: (train_fc, use_keypoints, hidden, trained)
        "baseline": (False, False, (), False), "model1": (False, False, (), True),
        "model2": (True, False, (), True), "model3": (False, True, (), True),
        "model4": (True, True, (), True), "model5": (True, True, (512,), True),
        "model6": (True, True, (512, 256), True),
    }
    for name, (fc, kp, hidden, trained) in table.items():
        c = PRESETS[name]
        assert (c.train_fc, c.use_keypoints, c.hidden, c.trained, c.unfreeze) == (fc, kp, hidden, trained, "none")
        assert c.feature_cacheable
    assert PRESETS["model4-layer4"].unfreeze == "layer4" and not PRESETS["model4-layer4"].feature_cacheable
    assert PRESETS["model6-full"].unfreeze == "all"


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_forward_backward_grads_only_where_trainable(name, random_state):
    cfg = get_preset(name, num_classes=5)
    # built from a ready state dict: skips ResNet-50's ~0.5 s random init per preset
    model = build_classifier(cfg, random_state).train()
    images, kp = _batch()
    logits = model(images, kp if cfg.use_keypoints else None)
    assert logits.shape == (2, 5)
    logits.logsumexp(1).sum().backward()
    prefixes = model.trainable_prefixes()
    for pname, p in model.named_parameters():
        if pname.startswith(prefixes):
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, pname
        else:
            assert not p.requires_grad and p.grad is None, pname
    # the head's input width: 1000 fc outputs (+ 51 keypoint values)
    assert model.head[0].in_features == 1000 + (51 if cfg.use_keypoints else 0)
    assert len(model.head) == 1 + 3 * len(cfg.hidden)


def test_frozen_batchnorm_stays_in_eval_mode_and_features_equal_forward():
    model = build_classifier(get_preset("model4", 3)).train()
    assert not model.backbone.bn1.training and not model.backbone.layer4[0].bn1.training
    assert model.head.training
    before = model.backbone.bn1.running_mean.clone()
    images, kp = _batch()
    out = model(images, kp)
    torch.testing.assert_close(model.backbone.bn1.running_mean, before)   # no state written
    torch.testing.assert_close(out, model.forward_head(model.forward_features(images), kp))
    # an unfrozen layer4 trains its BatchNorm (batch statistics), the stem stays frozen
    m4 = build_classifier(get_preset("model4-layer4", 3)).train()
    assert m4.backbone.layer4[0].bn1.training and not m4.backbone.layer3[0].bn1.training


def test_keypoint_preset_without_keypoints_is_a_clear_error():
    model = build_classifier(get_preset("model3", 3)).eval()
    with pytest.raises(ValueError, match="keypoints"):
        model(_batch()[0])


def test_config_round_trip_and_trainable_state():
    cfg = get_preset("model6-layer4", 7)
    assert ClassifierConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        ClassifierConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    m = build_classifier(cfg)
    keys = m.trainable_state_dict()
    assert any(k.startswith("backbone.layer4.") and k.endswith("running_mean") for k in keys)
    assert not any(k.startswith("backbone.layer3.") for k in keys)
    assert "fc.weight" in keys and "head.0.weight" in keys
    assert set(build_classifier(get_preset("model1", 7)).trainable_state_dict()) == {"head.0.weight", "head.0.bias"}


def test_load_trained_weights_mismatch_is_run_error(tmp_path):
    m5 = build_classifier(get_preset("model5", 4))
    m4 = build_classifier(get_preset("model4", 4))
    with pytest.raises(RunError, match="do not match the preset"):
        load_trained_weights(m4, m5.trainable_state_dict(), tmp_path / "weights.safetensors")
    other_classes = build_classifier(get_preset("model4", 6)).trainable_state_dict()
    with pytest.raises(RunError, match="shape"):
        load_trained_weights(m4, other_classes, tmp_path / "weights.safetensors")


# ----------------------------------------------------------------------------- backbones

def test_without_imagenet_or_a_poselab_backbone_a_random_init_must_be_asked_for(tmp_path, monkeypatch):
    monkeypatch.setattr(backbones, "SHIPPED_DIR", tmp_path / "no_checkpoints")
    with pytest.raises(DataError, match="--weights random"):
        backbones.resolve_backbone(None, runs_dir=tmp_path)
    assert not (tmp_path / "_backbones").exists()


def test_offline_the_default_backbone_is_the_shipped_poselab_one(tmp_path):
    _, info = backbones.resolve_backbone(None, runs_dir=tmp_path)
    card = info["card"]
    assert info["source"] == "poselab" and info["weights"].startswith("checkpoints/_poselab/")
    assert info["sha256"] == card["sha256"] and card["command"].startswith("python -m core pretrain")
    assert info["warning"] is None and not (tmp_path / "_backbones").exists()


def test_random_backbone_is_seeded_warned_and_stored_content_addressed(tmp_path, capsys):
    state, info = backbones.resolve_backbone("random", runs_dir=tmp_path, seed=3)
    err = capsys.readouterr().err
    assert err.startswith("WARNING:") and err.count("\n") == 1 and "random" in err
    assert info["source"] == "random" and info["warning"]
    stored = tmp_path / info["stored"]
    assert stored.parent.name == "_backbones" and stored.name == f"{info['sha256']}.safetensors"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == info["sha256"]
    # reloaded from the stored file, not from torch's RNG
    again = backbones.load_backbone(info, runs_dir=tmp_path, where=tmp_path / "run.json")
    torch.testing.assert_close(again["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    _, info2 = backbones.resolve_backbone("random", runs_dir=tmp_path, seed=3)
    assert info2["sha256"] == info["sha256"]
    _, info3 = backbones.resolve_backbone("random", runs_dir=tmp_path, seed=4)
    assert info3["sha256"] != info["sha256"]
    stored.unlink()
    with pytest.raises(RunError, match="missing"):
        backbones.load_backbone(info, runs_dir=tmp_path, where=tmp_path / "run.json")


def test_imagenet_requested_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    with pytest.raises(DataError, match="ImageNet"):
        backbones.resolve_backbone("imagenet", runs_dir=tmp_path)


def test_weights_file_sources_and_errors(tmp_path):
    from safetensors.torch import save_file
    state, _ = backbones.resolve_backbone("random", runs_dir=tmp_path, seed=5)
    good = tmp_path / "good.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(good))
    got, info = backbones.resolve_backbone(good, runs_dir=tmp_path)
    assert info["source"] == "file" and info["stored"] is None and info["warning"] is None
    model = build_classifier(get_preset("model1", 3), got)
    torch.testing.assert_close(model.fc.weight, state["fc.weight"])

    pt = tmp_path / "good.pt"            # torch state dict, wrapped as many checkpoints are
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, pt)
    got_pt, info_pt = backbones.resolve_backbone(pt, runs_dir=tmp_path)
    torch.testing.assert_close(got_pt["conv1.weight"], state["conv1.weight"])

    no_fc = tmp_path / "nofc.safetensors"  # backbone-only: fc completed and stored
    save_file({k: v.contiguous() for k, v in state.items() if not k.startswith("fc.")}, str(no_fc))
    _, info_nofc = backbones.resolve_backbone(no_fc, runs_dir=tmp_path, seed=5)
    assert info_nofc["stored"] and (tmp_path / info_nofc["stored"]).is_file() and info_nofc["warning"]

    wrong = tmp_path / "resnet18ish.safetensors"
    save_file({**{k: v.contiguous() for k, v in state.items()}, "conv1.weight": torch.zeros(32, 3, 7, 7)},
              str(wrong))
    with pytest.raises(DataError, match=r"resnet18ish\.safetensors.*conv1\.weight has shape"):
        backbones.resolve_backbone(wrong, runs_dir=tmp_path)

    partial = tmp_path / "partial.safetensors"
    save_file({"conv1.weight": state["conv1.weight"].contiguous()}, str(partial))
    with pytest.raises(DataError, match="not a torchvision ResNet-50 state dict"):
        backbones.resolve_backbone(partial, runs_dir=tmp_path)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="garbage.pt"):
        backbones.resolve_backbone(garbage, runs_dir=tmp_path)

    class Evil:  # a pickled object must be refused, never executed
        def __reduce__(self):
            return (print, ("pwned",))
    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(DataError, match="evil.pt"):
        backbones.resolve_backbone(evil, runs_dir=tmp_path)

    with pytest.raises(DataError, match="does not exist"):
        backbones.resolve_backbone(tmp_path / "nope.safetensors", runs_dir=tmp_path)


def test_calibrate_batchnorm_normalises_a_random_backbone(random_state, tmp_path):
    state = random_state
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(8, 3, 32, 32, generator=g) for _ in range(2)]
    cal = backbones.calibrate_batchnorm(state, images, device=torch.device("cpu"))
    assert set(cal) == set(state)
    torch.testing.assert_close(cal["conv1.weight"], state["conv1.weight"])    # weights untouched
    assert not torch.allclose(cal["layer4.2.bn3.running_var"], state["layer4.2.bn3.running_var"])
    assert torch.equal(state["bn1.running_var"], torch.ones(64))              # input not modified
    x = torch.cat(images)
    with torch.no_grad():
        raw = build_classifier(get_preset("model1", 3), state).eval().forward_features(x)
        calm = build_classifier(get_preset("model1", 3), cal).eval().forward_features(x)
    # uncalibrated activations grow through the blocks; calibrated pooled features are O(1)
    assert calm.abs().mean() < 2.0 and raw.abs().mean() > 3 * calm.abs().mean()
    sha, stored = backbones.store_backbone(cal, tmp_path)
    assert (tmp_path / stored).name == f"{sha}.safetensors"


def test_the_shipped_poselab_backbone_comes_after_imagenet_and_before_random(tmp_path, monkeypatch):
    """No ImageNet weights: the PoseLab backbone (fp16 on disk, float32 in use) with its
    card; random only when asked for; a file that does not match its card is refused."""
    import json

    from safetensors.torch import save_file

    from core.errors import RunError
    from core.io import sha256_file
    monkeypatch.setenv("POSELAB_OFFLINE", "1")
    state, _ = backbones.resolve_backbone("random", runs_dir=tmp_path, seed=3)
    shipped = tmp_path / "_poselab"
    shipped.mkdir()
    weights = shipped / "resnet50-test.safetensors"
    save_file({k: v.half().contiguous() if v.is_floating_point() else v for k, v in state.items()}, str(weights))
    card = {"task": "pose", "command": "python -m core pretrain ...", "sha256": sha256_file(weights)}
    backbones.card_path(weights).write_text(json.dumps(card))
    monkeypatch.setattr(backbones, "SHIPPED_DIR", shipped)
    got, info = backbones.resolve_backbone(None, runs_dir=tmp_path)
    assert info["source"] == "poselab" and info["card"] == card and info["sha256"] == card["sha256"]
    assert got["conv1.weight"].dtype == torch.float32
    torch.testing.assert_close(got["conv1.weight"], state["conv1.weight"].half().float())
    assert backbones.resolve_backbone("poselab", runs_dir=tmp_path)[1]["source"] == "poselab"
    assert backbones.resolve_backbone("random", runs_dir=tmp_path, seed=3)[1]["source"] == "random"
    again = backbones.load_backbone(info, runs_dir=tmp_path, where="run.json")   # a run rebuilds from it
    torch.testing.assert_close(again["fc.weight"], got["fc.weight"])
    backbones.card_path(weights).write_text(json.dumps({**card, "sha256": "0" * 64}))
    with pytest.raises(DataError, match="does not match its card"):
        backbones.resolve_backbone(None, runs_dir=tmp_path)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RunError, match="changed since the run"):
        backbones.load_backbone(info, runs_dir=tmp_path, where="run.json")
    monkeypatch.setattr(backbones, "SHIPPED_DIR", tmp_path / "nothing")
    with pytest.raises(DataError, match="no PoseLab backbone"):
        backbones.resolve_backbone("poselab", runs_dir=tmp_path)


def test_keypoints_enter_the_head_centred_and_missing_ones_stay_zero():
    from core.classification.model import PRESETS, head_keypoints
    kp = torch.tensor([[[0.5, 0.5, 1.0], [1.0, 0.25, 1.0], [0.0, 0.0, 0.0]]])   # centre, right edge, missing
    out = head_keypoints(kp, "centred")
    assert out.tolist() == [[[0.0, 0.0, 1.0], [2.0, -1.0, 1.0], [0.0, 0.0, 0.0]]]
    assert torch.equal(head_keypoints(kp, "crop"), kp)                   # runs written before "centred"
    assert all(PRESETS[p].keypoint_input == "centred" for p in PRESETS if PRESETS[p].use_keypoints)
    from core.classification.model import ClassifierConfig
    assert ClassifierConfig.from_dict({"use_keypoints": True}).keypoint_input == "crop"
