"""core.classification.saliency on a real (randomly initialised) PoseClassifier at 64 px."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.classification import saliency as sal
from core.classification.model import build_classifier, get_preset

S = 64
FAST = {"integrated_gradients": {"steps": 4, "batch": 4}, "smoothgrad": {"samples": 3, "batch": 3},
        "occlusion": {"window": 32, "stride": 32}}


def _model(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_classifier(get_preset(preset, num_classes=4)).eval()


@pytest.fixture(scope="module")
def plain():
    return _model("model1")


@pytest.fixture(scope="module")
def with_kp():
    return _model("model4")


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    image = torch.randn(3, S, S, generator=g)
    kp = torch.rand(17, 3, generator=g)
    kp[:, 2] = (kp[:, 2] > 0.3).float()
    return image, kp


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


@pytest.mark.parametrize("method", list(sal.METHODS))
def test_each_method_gives_unit_map_and_leaves_model_alone(method, plain, with_kp, inputs):
    image, kp = inputs
    for model, keypoints in ((plain, None), (with_kp, kp)):
        before = _state(model)
        flags = [p.requires_grad for p in model.parameters()]
        # The two most likely classes: Grad-CAM's ReLU zeroes a class with no positive
        # evidence anywhere, which on a random model is often the case for others.
        t0, t1 = np.argsort(sal.predict(model, image, keypoints))[::-1][:2]
        results = [sal.compute_saliency(model, image, keypoints, t, method, **FAST.get(method, {}))
                   for t in ((t0, t1) if keypoints is not None else (t0,))]
        for r in results:
            assert r.map.shape == (S, S) and r.map.dtype == np.float32
            assert np.isfinite(r.map).all() and r.map.min() >= 0 and r.map.max() <= 1
            assert r.map.max() > 0 and r.seconds > 0
        if keypoints is None:
            assert results[0].keypoint_attribution is None
        else:
            assert not np.allclose(results[0].map, results[1].map), f"{method}: same map for two targets"
            attr = results[0].keypoint_attribution
            assert attr.shape == (17,) and np.isfinite(attr).all() and np.abs(attr).sum() > 0
        # The shared model is untouched: weights, buffers, flags, grads, mode, hooks.
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert flags == [p.requires_grad for p in model.parameters()]
        assert all(p.grad is None for p in model.parameters())
        assert not model.training and _hooks(model) == 0


def test_integrated_gradients_keypoints_sum_to_their_share(with_kp, inputs):
    # Completeness: IG attributions over all inputs sum to f(x) - f(baseline); with many
    # steps the image part plus the keypoint part must come close.
    image, kp = inputs
    from captum.attr import IntegratedGradients
    x, k = image[None], kp[None]
    ig = IntegratedGradients(with_kp).attribute((x, k), baselines=(x * 0, k * 0), target=2, n_steps=16)
    r = sal.compute_saliency(with_kp, image, kp, 2, "integrated_gradients", steps=16, batch=16)
    np.testing.assert_allclose(r.keypoint_attribution, ig[1][0].sum(-1).numpy(), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        gap = (with_kp(x, k) - with_kp(x * 0, k * 0))[0, 2].item()
    total = ig[0].sum().item() + ig[1].sum().item()
    assert total == pytest.approx(gap, rel=0.05, abs=1e-3)


def test_train_mode_model_is_restored(inputs):
    model = _model("model1").train()
    sal.compute_saliency(model, inputs[0], None, 0, "gradient")
    assert model.training


def test_bad_arguments_raise(plain, inputs):
    with pytest.raises(ValueError, match="unknown saliency method"):
        sal.compute_saliency(plain, inputs[0], None, 0, "lime")
    with pytest.raises(ValueError, match="takes no option"):
        sal.compute_saliency(plain, inputs[0], None, 0, "gradient", steps=3)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        sal.compute_saliency(plain, inputs[0][0], None, 0, "gradient")


def test_predict_gives_probabilities(with_kp, inputs):
    p = sal.predict(with_kp, inputs[0], inputs[1])
    assert p.shape == (4,) and p.sum() == pytest.approx(1.0, abs=1e-5)


def test_overlay_shape_dtype_and_opacity():
    img = np.full((20, 30, 3), 100, np.uint8)
    m = np.zeros((10, 15), np.float32)
    m[5:, :] = 1.0
    for cmap in sal.COLORMAPS:
        out = sal.overlay(img, m, opacity=0.6, colormap=cmap)
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(sal.overlay(img, m, opacity=0.0), img)
    full = sal.overlay(img, np.ones((20, 30), np.float32), opacity=1.0, colormap="gray")
    assert (full == 255).all()
    with pytest.raises(ValueError):
        sal.overlay(img.astype(np.float32), m)
    with pytest.raises(ValueError):
        sal.overlay(img, m, colormap="rainbowz")


def test_lut_endpoints_and_png():
    lut = sal.colormap_lut("inferno")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) == (0, 0, 4) and tuple(lut[-1]) == (252, 255, 164)
    png = sal.to_png(np.zeros((4, 5, 3), np.uint8))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_person_mask_and_the_share_of_saliency_inside_it():
    # a 40 x 40 crop at (10, 20) of the scene, shown at 20 px: the square polygon
    # (20..30, 30..40) in the scene covers input pixels 5..10 x 5..10, exactly: a pixel is
    # inside when its centre is
    poly = [[20.0, 30.0, 30.0, 30.0, 30.0, 40.0, 20.0, 40.0]]
    mask = sal.person_mask(poly, (10, 20, 50, 60), 20)
    assert mask.shape == (20, 20) and mask[5:10, 5:10].all() and mask.sum() == 25
    assert not mask[:4].any() and not mask[:, 12:].any()
    m = np.zeros((20, 20))
    m[6:9, 6:9] = 1.0
    assert sal.mass_inside(m, mask) == 1.0
    m[0, 0] = 9.0                                     # 9 of 18 units outside
    assert sal.mass_inside(m, mask) == pytest.approx(0.5)
    assert np.isnan(sal.mass_inside(np.zeros((20, 20)), mask))
