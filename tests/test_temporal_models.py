"""Temporal models on tiny CPU tensors: shapes, gradients, identity, DeciWatch details."""
import pytest
import torch

from core.heatmaps import decode_heatmaps, gaussian_heatmaps
from core.temporal.models import (
    ARCHS,
    LEARNED,
    build_temporal,
    config_from_dict,
    config_to_dict,
    deciwatch_loss,
    make_config,
)
from core.temporal.models.deciwatch import interpolation_matrix

B, T, K, S = 2, 5, 25, 12
SMALL = {  # keep the suite fast: narrow layers, same code paths
    "conv3d": dict(hidden=8),
    "deciwatch": dict(embed_dim=16, heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1),
    "convlstm-sum": dict(hidden=6),
    "convlstm-concat": dict(hidden=6),
    "identity": {},
}
# the classical filters (one-euro, savgol, ...) run at their default configs


def _cfg(arch, **kw):
    return make_config(arch, **{**SMALL.get(arch, {}), **kw})


def _window(seed=0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(B, T, K, 2, generator=g) * (S - 1)
    return gaussian_heatmaps(pts, (S, S)), pts                          # (B,T,K,S,S), (B,T,K,2)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_forward_shapes_and_output_kind(arch):
    model = build_temporal(_cfg(arch)).eval()
    x, _ = _window()
    y = model(x)
    if model.output_kind == "coords":
        assert y.shape == (B, T, K, 2)
    else:
        assert model.output_kind == "heatmaps" and y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("arch", LEARNED)
def test_backward_reaches_every_parameter(arch):
    torch.manual_seed(0)
    # DeciWatch's output layers start at zero (next test), which blocks the gradient to
    # the layers before them for exactly one step; non-zero ones show the whole path
    extra = {"out_init_std": 1e-3} if arch == "deciwatch" else {}
    model = build_temporal(_cfg(arch, **extra)).train()
    x, pts = _window()
    if model.output_kind == "coords":
        batch = {"heatmaps": x, "keypoints": pts, "visible": torch.ones(B, T, K, dtype=torch.bool)}
        terms, _ = deciwatch_loss(model, model, batch)
        loss = sum(w * total / count for w, total, count in terms)
    else:
        loss = (model(x) - torch.rand_like(x)).pow(2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{arch}: no gradient for {name}"


def test_untrained_deciwatch_is_the_identity_and_trains_from_there():
    torch.manual_seed(0)
    model = build_temporal(_cfg("deciwatch", interval=1))
    x, pts = _window()
    with torch.no_grad():
        p_in, _ = decode_heatmaps(x)
        # epoch 0 = the identity baseline (up to the float round trip through [-1, 1])
        torch.testing.assert_close(model.eval()(x), p_in, rtol=0, atol=1e-5)
    batch = {"heatmaps": x, "keypoints": pts, "visible": torch.ones(B, T, K, dtype=torch.bool)}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):                                      # step 1 moves the output layers,
        terms, _ = deciwatch_loss(model.train(), model, batch)  # step 2 everything before them
        opt.zero_grad()
        sum(w * total / count for w, total, count in terms).backward()
        opt.step()
    assert model.denoise_embed.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert (model.eval()(x) - p_in).abs().max() > 1e-3


@pytest.mark.parametrize("arch", ["conv3d", "convlstm-sum", "convlstm-concat"])
def test_heatmap_models_start_near_identity(arch):
    # residual + small last layer: an untrained model decodes to the input's peaks
    model = build_temporal(_cfg(arch)).eval()
    x, _ = _window()
    with torch.no_grad():
        p_in, _ = decode_heatmaps(x)
        p_out, _ = decode_heatmaps(model(x))
    assert (p_in - p_out).abs().max() < 0.05


def test_identity_equals_input_and_has_no_parameters():
    model = build_temporal(make_config("identity"))
    x, _ = _window()
    assert model(x) is x
    assert sum(p.numel() for p in model.parameters()) == 0


@pytest.mark.parametrize("interval,sampled", [(2, [0, 2, 4]), (4, [0, 4])])
def test_deciwatch_intervals(interval, sampled):
    cfg = make_config("deciwatch", interval=interval, **SMALL["deciwatch"])
    model = build_temporal(cfg).eval()
    assert model.sampled == sampled
    x, _ = _window()
    den, rec = model.forward_train(model.decode(x))
    assert den.shape == (B, len(sampled), K, 2) and rec.shape == (B, T, K, 2)
    # interpolation reproduces sampled frames exactly and is linear in between
    w = interpolation_matrix(T, interval)
    assert torch.allclose(w.sum(1), torch.ones(T))
    assert torch.allclose(w[sampled], torch.eye(len(sampled)))
    if interval == 4:
        assert torch.allclose(w[1], torch.tensor([0.75, 0.25]))


def test_deciwatch_bad_interval_and_coordinate_round_trip():
    with pytest.raises(ValueError):
        build_temporal(make_config("deciwatch", interval=3))
    model = build_temporal(make_config("deciwatch", **SMALL["deciwatch"]))
    pts = torch.rand(3, K, 2) * 15
    assert torch.allclose(model.denormalise(model.normalise(pts, (16, 16)), (16, 16)), pts, atol=1e-5)


def test_deciwatch_loss_ignores_invisible_joints():
    model = build_temporal(_cfg("deciwatch")).eval()      # eval: no random window transform
    gt = torch.rand(B, T, K, 2) * (S - 1)
    norm_gt = model.normalise(gt, (S, S))
    den, rec = norm_gt[:, model.sampled].clone(), norm_gt.clone()
    model.forward_train = lambda x: (den, rec)   # the loss of given outputs, not of a model
    batch = {"heatmaps": torch.zeros(B, T, K, S, S), "keypoints": gt,
             "visible": torch.ones(B, T, K, dtype=torch.bool)}

    def loss():
        terms, _ = deciwatch_loss(model, model, batch)
        return sum(w * total / count for w, total, count in terms)
    assert loss() < 1e-6
    rec[:, :, 3] += 10                           # wrong everywhere on joint 3 ...
    assert loss() > 1.0
    batch["visible"][:, :, 3] = False            # ... which has no ground truth
    assert loss() < 1e-6


def test_no_state_written_in_forward():
    for arch in ARCHS:
        model = build_temporal(_cfg(arch)).eval()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        model(_window()[0])
        after = model.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)


def test_config_round_trip_and_bad_names():
    for arch in ARCHS:
        cfg = _cfg(arch)
        assert config_from_dict(config_to_dict(cfg)) == cfg
        assert config_to_dict(cfg)["arch"] == arch
    with pytest.raises(ValueError):
        make_config("lstm")
    with pytest.raises(ValueError):
        make_config("conv3d", hiden=3)


def test_convlstm_directions_are_causal_and_anticausal():
    # forward states at frame t depend on frames <= t only, backward states on frames >= t
    model = build_temporal(make_config("convlstm-concat", hidden=4)).eval()
    x, _ = _window()
    with torch.no_grad():
        fwd, bwd = model._run(x)
        late, early = x.clone(), x.clone()
        late[:, -1] += 1
        early[:, 0] += 1
        f_late, b_late = model._run(late)
        f_early, b_early = model._run(early)
    assert torch.equal(fwd[:, :-1], f_late[:, :-1]) and not torch.allclose(b_late[:, 0], bwd[:, 0])
    assert torch.equal(bwd[:, 1:], b_early[:, 1:]) and not torch.allclose(f_early[:, -1], fwd[:, -1])


def test_deciwatch_coordinates_stay_float32_under_bf16_autocast():
    """On CUDA training runs under bf16 autocast; DeciWatch's coordinate path (input +
    small residuals) must not be rounded to bf16. Checked with CPU bf16 autocast."""
    torch.manual_seed(0)
    model = build_temporal(make_config("deciwatch", embed_dim=32, heads=4, ffn_dim=64,
                                       encoder_layers=1, decoder_layers=1, out_init_std=1e-3)).eval()
    poses = torch.rand(2, 5, 25, 2) * 2 - 1
    with torch.no_grad():
        ref_den, ref_rec = model.forward_coords(poses)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            den, rec = model.forward_coords(poses)
            px = model(torch.rand(2, 5, 25, 16, 16))
    assert den.dtype == rec.dtype == px.dtype == torch.float32
    # only the transformers' bf16 arithmetic differs: residuals are ~1e-3, so the
    # coordinates agree far below bf16's ~4e-3 rounding of values near 1
    assert (rec - ref_rec).abs().max() < 5e-4 and (den - ref_den).abs().max() < 5e-4
