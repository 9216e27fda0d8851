"""The compute behind the new dashboard views, on tiny models and data made here:
mistakenness / hardness (core.classification.mistakes), deletion / insertion and the
randomisation check (core.classification.trust), the completeness split and the
counterfactuals (core.classification.attribution), projections (core.classification.embedding),
and the saliency registry (core.classification.saliency.METHODS)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from core.classification import attribution as attr
from core.classification import embedding, mistakes, report, trust
from core.classification import saliency as sal
from core.classification.model import build_classifier, get_preset, head_keypoints
from core.errors import DataError, RunError

# ------------------------------------------------------------------ mistakenness, hardness


def test_mistakenness_hardness_margin_by_hand():
    p = np.array([[1.0, 0.0, 0.0],      # certain and right
                  [1.0, 0.0, 0.0],      # certain and wrong
                  [1 / 3, 1 / 3, 1 / 3],  # uniform
                  [0.5, 0.5, 0.0]])     # a tie of two
    correct = np.array([True, False, True, False])
    np.testing.assert_allclose(mistakes.mistakenness(p, correct), [0.0, 1.0, (1 - 1 / 3) / 2, (1 + 0.5) / 2])
    np.testing.assert_allclose(mistakes.entropy(p), [0.0, 0.0, math.log(3), math.log(2)])
    np.testing.assert_allclose(mistakes.margin(p), [1.0, 1.0, 0.0, 0.0], atol=1e-12)


def _preds(probs: np.ndarray, labels: list[int], classes: list[str]) -> pd.DataFrame:
    pred = probs.argmax(1)
    df = pd.DataFrame({"sample_id": [f"s{i}" for i in range(len(labels))], "label": labels, "pred": pred,
                       "confidence": probs.max(1), "correct": pred == np.array(labels)})
    for j, c in enumerate(classes):
        df[f"prob_{c}"] = probs[:, j]
    return df


def test_scores_sort_the_gallery_and_a_run_without_probabilities_says_so():
    classes = ["a", "b"]
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.55, 0.45]])
    df = mistakes.prediction_scores(_preds(probs, [0, 1, 0, 0], classes), classes)
    # wrong and sure (s2: 0.8 for b) is the most mistaken, then the unsure wrong one (s1)
    assert report.sort_predictions(df, "most mistaken")["sample_id"].tolist() == ["s2", "s1", "s3", "s0"]
    assert report.sort_predictions(df, "hardest (entropy)")["sample_id"].iloc[0] == "s3"
    assert report.sort_predictions(df, "smallest margin")["sample_id"].tolist()[:2] == ["s3", "s1"]
    with pytest.raises(ValueError, match="mistakenness"):
        report.sort_predictions(_preds(probs, [0, 1, 0, 0], classes), "most mistaken")
    bare = _preds(probs, [0, 1, 0, 0], classes).drop(columns=["prob_a", "prob_b"])
    with pytest.raises(RunError, match="no stored class probabilities"):
        mistakes.prediction_scores(bare, classes, "predictions.parquet")


# ------------------------------------------------------------------ deletion / insertion


class RegionModel(nn.Module):
    """Two logits, +-k * (mean of the pixels in a square): the evidence for class 0 is
    exactly that square, so a map on it is faithful and its complement is not."""

    def __init__(self, box=(4, 12, 4, 12), k=4.0):
        super().__init__()
        self.box, self.k = box, k
        self.dummy = nn.Parameter(torch.zeros(()))     # a device to read

    def forward(self, x, kp=None):
        y0, y1, x0, x1 = self.box
        s = self.k * x[:, :, y0:y1, x0:x1].mean(dim=(1, 2, 3)) + 0 * self.dummy
        return torch.stack([s, -s], 1)


def _region_inputs():
    image = torch.full((3, 24, 24), -0.5)
    image[:, 4:12, 4:12] = 1.0                          # the evidence: bright square
    on = np.zeros((24, 24), np.float32)
    on[4:12, 4:12] = 1.0
    on += np.linspace(0, 1e-3, 24 * 24, dtype=np.float32).reshape(24, 24)   # a strict order
    return image, on


def test_deletion_insertion_reward_the_faithful_map():
    model = RegionModel().eval()
    image, on = _region_inputs()
    good = trust.deletion_insertion(model, image, None, 0, on, steps=12)
    bad = trust.deletion_insertion(model, image, None, 0, 1.0 - on, steps=12)
    a, b = good.auc, bad.auc
    assert a["deletion"] < a["deletion_random"] < b["deletion"]
    assert a["insertion"] > a["insertion_random"] > b["insertion"]
    # both ends are shared: the image itself, the mean-colour image and the blurred one
    with torch.no_grad():
        p = lambda x: torch.softmax(model(x[None]), 1)[0, 0].item()   # noqa: E731
    assert good.deletion[0] == pytest.approx(p(image)) == pytest.approx(good.insertion[-1])
    assert good.deletion[-1] == pytest.approx(p(torch.zeros_like(image)))
    assert good.insertion[0] == pytest.approx(p(trust.blurred(image)))
    np.testing.assert_array_equal(good.deletion_random, bad.deletion_random)   # same seed, same order
    assert good.fractions.tolist() == pytest.approx(np.linspace(0, 1, 13).tolist())


def test_deletion_insertion_keep_keypoints_and_check_shapes():
    torch.manual_seed(0)
    model = build_classifier(get_preset("model4", num_classes=3)).eval()
    image, kp = torch.randn(3, 32, 32), torch.rand(17, 3)
    m = sal.compute_saliency(model, image, kp, 1, "gradient").map
    c = trust.deletion_insertion(model, image, kp, 1, m, steps=4)
    assert c.deletion.shape == (5,) and np.isfinite(c.deletion).all()
    assert c.deletion[0] == pytest.approx(float(sal.predict(model, image, kp)[1]), rel=1e-4)
    with pytest.raises(ValueError, match="does not match"):
        trust.deletion_insertion(model, image, kp, 1, m[:16], steps=4)


# ------------------------------------------------------------------ the randomisation check


@pytest.fixture(scope="module")
def small_model4():
    torch.manual_seed(0)
    return build_classifier(get_preset("model4", num_classes=4)).eval()


def same(a: nn.Module, b: nn.Module, prefix: str) -> bool:
    """Whether two models hold equal tensors under ``prefix``."""
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(prefix)]
    return bool(keys) and all(torch.equal(sa[k], sb[k]) for k in keys)


def test_cascading_randomisation_layers_and_the_model_untouched(small_model4):
    before = {k: v.clone() for k, v in small_model4.state_dict().items()}
    head = trust.randomised_model(small_model4, "head")
    l4 = trust.randomised_model(small_model4, "layer4")
    everything = trust.randomised_model(small_model4, "all")
    assert not same(head, small_model4, "head.") and not same(head, small_model4, "fc.")
    assert same(head, small_model4, "backbone.")
    assert not same(l4, small_model4, "backbone.layer4.") and same(l4, small_model4, "backbone.layer3.")
    assert not same(everything, small_model4, "backbone.conv1.")
    # per-layer seeds: a layer is re-drawn the same in every stage, and every time
    assert same(l4, everything, "backbone.layer4.") and same(head, l4, "head.")
    assert same(trust.randomised_model(small_model4, "all"), everything, "backbone.")
    after = small_model4.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_rank_correlation_and_verdicts():
    a = np.arange(100.0).reshape(10, 10)
    assert trust.rank_correlation(a, a) == pytest.approx(1.0)
    assert trust.rank_correlation(a, -a) == pytest.approx(-1.0)
    assert math.isnan(trust.rank_correlation(a, np.zeros_like(a)))
    ok = trust.sanity_check(a, {"head": -a, "layer4": np.random.default_rng(0).random((10, 10)), "all": -a})
    assert ok.passed and not any(ok.unchanged.values()) and ok.verdict.startswith("Passes the")
    warn = trust.sanity_check(a, {"head": a, "layer4": -a, "all": -a})
    assert warn.passed and "warning" in warn.verdict
    bad = trust.sanity_check(a, {"head": a, "layer4": a, "all": a + 1})
    assert not bad.passed and bad.verdict.startswith("Fails")


def test_a_model_blind_method_fails_the_check_and_registers_in_one_entry(small_model4, monkeypatch):
    """A map that ignores the model (the image's own brightness) cannot change when the
    weights are randomised: the check must fail it. Adding it is one function + one entry."""
    def brightness(model, x, kp, target, o):
        return x[0].abs().sum(0), None
    monkeypatch.setitem(sal.METHODS, "brightness", sal.Method("Image brightness", brightness))
    image, kp = torch.randn(3, 32, 32), torch.rand(17, 3)
    check = trust.randomisation_check(small_model4, image, kp, 0, "brightness")
    assert check.rank_correlation == pytest.approx({"head": 1.0, "layer4": 1.0, "all": 1.0})
    assert not check.passed
    grad = trust.randomisation_check(small_model4, image, kp, 0, "gradient")
    assert all(-1 <= r <= 1 for r in grad.rank_correlation.values())


def test_registry_records_and_common_scale():
    for name, m in sal.METHODS.items():
        assert m.label and callable(m.fn)
        for o in m.options.values():
            assert o.label is None or o.low <= o.default <= o.high
    assert sal.method_options("integrated_gradients", {"steps": 8}) == {"steps": 8, "batch": 8}
    raw = np.zeros((4, 4), np.float32)
    raw[0, 0] = 2.0
    half = raw / 2
    r = [sal.SaliencyResult(sal.scale_map(x, "gradcam"), None, 0.0, "gradcam", 0, x) for x in (raw, half)]
    maps, top = sal.common_scale(r)
    assert top == 2.0 and maps[0].max() == 1.0 and maps[1].max() == 0.5     # one scale keeps the ratio
    with pytest.raises(ValueError, match="one method"):
        sal.common_scale([r[0], sal.SaliencyResult(r[1].map, None, 0.0, "gradient", 0, half)])


# ------------------------------------------------------------------ what the keypoints contribute


def test_pixel_split_is_complete(small_model4):
    g = torch.Generator().manual_seed(3)
    image, kp = torch.randn(3, 32, 32, generator=g), torch.rand(17, 3, generator=g)
    s = attr.pixel_split(small_model4, image, kp, 2, steps=64, batch=16)
    assert s.image + s.keypoints == pytest.approx(s.gap, rel=0.05, abs=1e-3)
    assert s.image_share + s.keypoint_share == pytest.approx(1.0)
    assert s.per_keypoint.shape == (17,) and s.per_keypoint.sum() == pytest.approx(s.keypoints, rel=1e-4)


def test_head_split_is_exact_for_a_linear_head(small_model4):
    g = torch.Generator().manual_seed(4)
    f, kp = torch.randn(6, 2048, generator=g), torch.rand(6, 17, 3, generator=g)
    f0 = torch.randn(2048, generator=g)
    targets = np.array([0, 1, 2, 3, 0, 1])
    split = attr.head_split(small_model4, f.numpy(), kp.numpy(), targets, f0, steps=8)
    with torch.no_grad():
        w = small_model4.head[0].weight                      # (C, F + 51): the linear head
        F_ = small_model4.cfg.fc_dim
        t = torch.as_tensor(targets)
        image = ((small_model4.fc(f) - small_model4.fc(f0[None])) * w[t, :F_]).sum(1)
        # keypoints enter the head centred (model.head_keypoints); the baseline's are all zero
        keyp = (head_keypoints(kp, small_model4.cfg.keypoint_input).flatten(1) * w[t, F_:]).sum(1)
    np.testing.assert_allclose(split["image"], image.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(split["keypoints"], keyp.numpy(), rtol=1e-4, atol=1e-4)
    assert split["delta"].abs().max() < 1e-3
    table = attr.class_split(split, np.array([0, 0, 1, 1, 2, 2]), ["a", "b", "c"])
    assert table["samples"].tolist() == [2, 2, 2] and set(table["class"]) == {"a", "b", "c"}
    row = table.set_index("class").loc["a"]
    assert row["image_share"] == pytest.approx(split["image_share"][:2].mean())


def test_keypoint_free_preset_gets_a_readable_error():
    model1 = build_classifier(get_preset("model1", num_classes=3)).eval()
    with pytest.raises(DataError, match="does not use keypoints"):
        attr.pixel_split(model1, torch.zeros(3, 32, 32), torch.zeros(17, 3), 0)
    with pytest.raises(DataError, match="does not use keypoints"):
        attr.counterfactual(model1, torch.zeros(3, 32, 32), torch.zeros(17, 3), torch.zeros(17, 3), "x")


def test_moving_a_keypoint_by_the_pck_radius():
    kp = torch.zeros(17, 3)
    kp[5] = torch.tensor([0.2, 0.3, 1.0])
    kp[11] = torch.tensor([0.4, 0.8, 1.0])                   # box 0.2 x 0.5: radius 0.05
    r = attr.pck_radius(kp)
    assert r == pytest.approx(0.05)
    moved = attr.moved_keypoint(kp, 5, "up", r)
    assert moved[5].tolist() == pytest.approx([0.2, 0.25, 1.0]) and torch.equal(kp[5], torch.tensor([0.2, 0.3, 1.0]))
    assert attr.moved_keypoint(kp, 5, "down-right", r)[5, :2].tolist() == pytest.approx(
        [0.2 + r / math.sqrt(2), 0.3 + r / math.sqrt(2)])
    with pytest.raises(DataError, match="missing"):
        attr.moved_keypoint(kp, 0, "up", r)
    with pytest.raises(DataError, match="fewer than two"):
        attr.pck_radius(torch.zeros(17, 3))


# ------------------------------------------------------------------ projections


def test_projections_keep_two_clusters_apart():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 60)), rng.normal(4, 1, (30, 60))])
    labels = np.repeat([0, 1], 30)
    for method in embedding.PROJECTIONS:
        xy = embedding.project(x, method)
        assert xy.shape == (60, 2) and xy.dtype == np.float32
        d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        assert (labels[d.argmin(1)] == labels).mean() == 1.0        # nearest neighbour: same cluster
    np.testing.assert_array_equal(embedding.project(x, "tsne"), embedding.project(x, "tsne"))   # seeded
    with pytest.raises(DataError, match="too few"):
        embedding.project(x[:3])


def test_selected_ids_from_plotly_events():
    frame = pd.DataFrame({"sample_id": ["a", "b", "c"], "x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 2.0]})
    event = {"selection": {"points": [{"customdata": ["b", "x", "y", 0.5]}, {"x": 2.0, "y": 2.0},
                                      {"customdata": ["b"]}]}}
    assert embedding.selected_ids(event, frame) == ["b", "c"]
    assert embedding.selected_ids(None, frame) == [] and embedding.selected_ids({"selection": {}}, frame) == []
