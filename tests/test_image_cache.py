"""The preprocessed image cache: same pixels as PoseDataset, built once, atomic, keyed."""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.classification.image_cache import CHUNK, ImageCache, build_image_cache, cache_stem, normalize_uint8  # noqa: E402
from core.errors import DataError  # noqa: E402


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    from core.classification.dataset import load_infiniteform
    from core.synthetic.images import ImageSpec, write_image_dataset
    root = tmp_path_factory.mktemp("ic")
    write_image_dataset(root / "data", ImageSpec(n_train=12, n_test=4, seed=1, size=96, people_max=3), progress=False)
    return load_infiniteform(root / "data")


def _all(index):
    return [s for k in ("train", "val", "test") for s in index.splits[k]]


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_equals_posedataset(index, tmp_path, monkeypatch, workers):
    """Pool (fork, several chunks) or in-process: every item equals PoseDataset's."""
    import core.classification.image_cache as ic
    from core.classification.crops import PoseDataset
    monkeypatch.setattr(ic, "CHUNK", 5)            # several chunks even for this tiny set
    samples = _all(index)
    stats = {}
    cache = build_image_cache(samples, fingerprint=index.fingerprint, image_size=48, margin=0.15,
                              cache_dir=tmp_path, workers=workers, progress=False, stats=stats)
    assert stats["built"] and stats["workers"] == workers and len(cache) == len(samples)
    ref = PoseDataset(samples, image_size=48, margin=0.15)
    ds = cache.dataset(samples)
    for i in range(len(samples)):
        a, b = ref[i], ds[i]
        torch.testing.assert_close(b["image"], a["image"], atol=1e-6, rtol=0)
        assert int(b["label"]) == int(a["label"])
        torch.testing.assert_close(b["keypoints"], a["keypoints"])
    # batched path (normalised on the device) gives the same tensors, in order
    got = torch.cat([b["image"] for b in ds.batches(4, "cpu")])
    torch.testing.assert_close(got, torch.stack([ref[i]["image"] for i in range(len(samples))]),
                               atol=1e-6, rtol=0)


def test_second_build_is_a_load_and_keys_separate(index, tmp_path):
    samples = _all(index)
    kw = dict(fingerprint=index.fingerprint, margin=0.15, cache_dir=tmp_path, workers=1, progress=False)
    build_image_cache(samples, image_size=32, **kw)
    stats = {}
    again = build_image_cache(samples[:5], image_size=32, stats=stats, **kw)   # a subset: covered
    assert stats["built"] is False and len(again) == len(samples)
    assert again.rows(samples[:5]).tolist() == [0, 1, 2, 3, 4]
    other = build_image_cache(samples, image_size=40, **kw)                   # other size: other file
    assert other.images.shape[1:] == (40, 40, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{cache_stem(index.fingerprint, s, 0.15)}{ext}" for s in (32, 40) for ext in (".json", ".npy"))


def test_damaged_or_mismatched_index_is_a_miss(index, tmp_path):
    samples = _all(index)[:3]
    build_image_cache(samples, fingerprint=index.fingerprint, image_size=16, margin=0.15,
                      cache_dir=tmp_path, workers=1, progress=False)
    meta_path = tmp_path / f"{cache_stem(index.fingerprint, 16, 0.15)}.json"
    meta = json.loads(meta_path.read_text())
    meta["sample_ids"] = meta["sample_ids"][:2]                    # shape no longer agrees
    meta_path.write_text(json.dumps(meta))
    assert ImageCache.load(tmp_path, fingerprint=index.fingerprint, image_size=16, margin=0.15) is None
    meta_path.write_text("{broken")
    assert ImageCache.load(tmp_path, fingerprint=index.fingerprint, image_size=16, margin=0.15) is None


def test_unreadable_image_is_data_error_and_leaves_nothing(index, tmp_path):
    import dataclasses
    samples = _all(index)[:4]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    samples[2] = dataclasses.replace(samples[2], image_path=bad)
    out = tmp_path / "cache"
    with pytest.raises(DataError, match="bad.png"):
        build_image_cache(samples, fingerprint="x", image_size=16, margin=0.15, cache_dir=out,
                          workers=2, progress=False)
    assert list(out.iterdir()) == []                                 # no temp file, no index


def test_normalize_uint8_matches_formula_and_channels_last():
    u8 = torch.randint(0, 256, (2, 5, 5, 3), dtype=torch.uint8)
    x = normalize_uint8(u8, channels_last=True)
    assert x.shape == (2, 3, 5, 5) and x.is_contiguous(memory_format=torch.channels_last)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    ref = ((u8.numpy().astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(x.numpy(), ref, atol=1e-6)
    assert CHUNK > 1


# ----------------------------------------------------------------------------- torchvision / nvJPEG

@pytest.fixture(scope="module")
def jpeg_index(tmp_path_factory):
    """Synthetic data written as JPEG (``--format jpeg``), one file re-stored rotated with
    EXIF orientation 6 (display = rotate 90 clockwise), the way a phone stores a portrait."""
    from PIL import Image

    from core.classification.dataset import load_infiniteform
    from core.synthetic.images import ImageSpec, write_image_dataset
    root = tmp_path_factory.mktemp("jpeg") / "data"
    write_image_dataset(root, ImageSpec(n_train=10, n_test=3, seed=2, size=128, people_max=3,
                                        image_format="jpeg"), progress=False)
    first = root / "train" / "1.rgb.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(first).transpose(Image.Transpose.ROTATE_90).save(first, quality=95, exif=exif)
    return load_infiniteform(root)


def test_torchvision_decoder_matches_pil_within_a_few_levels(jpeg_index, tmp_path):
    """decode_jpeg + crop + antialiased resize (the nvJPEG path, here on the CPU) against
    the PIL pool on the same JPEG files: another IDCT and resize, so a few levels apart,
    never a different picture (EXIF orientation included)."""
    samples = _all(jpeg_index)
    kw = dict(fingerprint=jpeg_index.fingerprint, image_size=48, margin=0.15, cache_dir=tmp_path,
              progress=False)
    st_pil, st_tv = {}, {}
    pil = build_image_cache(samples, workers=1, stats=st_pil, **kw)
    tv = build_image_cache(samples, decoder="torchvision", device="cpu", decode_batch=4, stats=st_tv, **kw)
    assert st_pil["decoder"] == "pil" and st_tv["decoder"] == "torchvision" and st_tv["built"]
    assert tv.path != pil.path and tv.sample_ids == pil.sample_ids          # separate keys, same rows
    diff = np.abs(tv.images.astype(np.int16) - pil.images.astype(np.int16))
    assert diff.mean() < 1.5, diff.mean()
    assert np.percentile(diff, 99) <= 12, np.percentile(diff, 99)
    # a mis-oriented crop would differ by tens of levels on average; per sample:
    assert diff.reshape(len(samples), -1).mean(axis=1).max() < 3
    # a second call of the same key loads the cache
    again = {}
    build_image_cache(samples, decoder="torchvision", device="cpu", stats=again, **kw)
    assert again["built"] is False


def test_crop_resize_tensor_pads_like_crop_padded():
    from PIL import Image

    from core.classification.crops import crop_padded
    from core.classification.image_cache import crop_resize_tensor
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    t = torch.from_numpy(img).permute(2, 0, 1)
    for box in [(5, 5, 25, 25), (-8, -4, 16, 20), (30, 20, 50, 40), (-10, -10, 50, 50)]:
        want = np.asarray(crop_padded(Image.fromarray(img), box))
        got = crop_resize_tensor(t, box, box[2] - box[0]).numpy()     # no resize: exact
        np.testing.assert_array_equal(got, want)


def test_decoder_falls_back_to_pil_for_png_and_rejects_unknown(index, tmp_path, capsys):
    from core.classification.image_cache import resolve_decoder
    samples = _all(index)                                  # PNG files
    assert resolve_decoder(samples, "auto", "cpu") == "pil"
    assert resolve_decoder(samples, "torchvision", "cpu") == "pil"
    assert "JPEG only" in capsys.readouterr().out
    with pytest.raises(DataError, match="unknown image decoder"):
        resolve_decoder(samples, "nvjpeg2", "cpu")


def test_corrupt_jpeg_names_the_file_and_leaves_nothing(jpeg_index, tmp_path):
    import shutil
    samples = _all(jpeg_index)
    data = tmp_path / "copy"
    shutil.copytree(Path(samples[0].image_path).parent.parent, data)
    from core.classification.dataset import load_infiniteform
    copy = load_infiniteform(data)
    victim = Path(_all(copy)[3].image_path)
    victim.write_bytes(victim.read_bytes()[:200])          # a JPEG header, then nothing
    cache_dir = tmp_path / "cache"
    with pytest.raises(DataError) as e:
        build_image_cache(_all(copy), fingerprint=copy.fingerprint, image_size=32, margin=0.15,
                          cache_dir=cache_dir, decoder="torchvision", device="cpu", progress=False)
    assert victim.name in str(e.value)
    assert not list(cache_dir.iterdir())


def test_training_with_the_torchvision_decoder_records_and_keys_it(jpeg_index, tmp_path, monkeypatch):
    """`train classifier --decoder torchvision` on JPEG data: the image cache and the
    feature cache carry the decoder in their names (a PIL run beside it builds its own),
    and run.json records it."""
    import pandas as pd

    from core.classification.train import ClassifierJob, TrainConfig, train_classifier
    monkeypatch.setenv("POSELAB_OFFLINE", "1")
    job = ClassifierJob(data=jpeg_index.root, runs_dir=tmp_path, presets=("model1",), device="cpu", progress=False,
                        recipe=TrainConfig(epochs=1, batch_size=8, image_size=32))
    tv = train_classifier(replace(job, decoder="torchvision"))
    pil = train_classifier(replace(job, decoder="pil"))
    assert json.loads((tv / "run.json").read_text())["image_decoder"] == "torchvision"
    assert json.loads((pil / "run.json").read_text())["image_decoder"] == "pil"
    assert len(list((tmp_path / "_cache" / "images").glob("*-torchvision.npy"))) == 1
    assert len(list((tmp_path / "_cache" / "features").glob("*-torchvision.safetensors"))) == 1
    a, b = (pd.read_parquet(r / "predictions.parquet") for r in (tv, pil))
    assert a["sample_id"].tolist() == b["sample_id"].tolist()
    assert len(list((tmp_path / "_cache" / "features").glob("*.safetensors"))) == 2


def test_cached_batches_give_the_decoded_crops_in_the_trainers_order(index, tmp_path):
    """Training through the backbone reads the cache: every batch equals PoseDataset's
    items for the same indices (same pixels, channels-last), in the order of
    core.distributed.GlobalBatches, epoch after epoch (the order the cached-feature path
    uses too, so both paths see the same batches)."""
    from core.classification.crops import PoseDataset
    from core.classification.train import Batches
    samples = _all(index)
    cache = build_image_cache(samples, fingerprint=index.fingerprint, image_size=40, margin=0.15,
                              cache_dir=tmp_path, workers=1, progress=False)
    train = index.splits["train"]
    ref = PoseDataset(train, image_size=40, margin=0.15)
    got = Batches(cache.dataset(train), 5, torch.device("cpu"), shuffle=True, seed=3)
    assert len(got) == -(-len(train) // 5)
    orders = []
    for epoch in range(3):
        got.set_epoch(epoch)
        order = np.random.default_rng(3 * 100_003 + epoch).permutation(len(train))
        batches = list(got)
        assert sum((b["index"].tolist() for b in batches), []) == order.tolist()
        for b in batches:
            items = [ref[int(i)] for i in b["index"]]
            torch.testing.assert_close(b["image"], torch.stack([it["image"] for it in items]), atol=1e-6, rtol=0)
            assert b["image"].is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(b["label"], torch.stack([it["label"] for it in items]))
            torch.testing.assert_close(b["keypoints"], torch.stack([it["keypoints"] for it in items]))
            assert torch.equal(b["weight"], torch.ones(len(items)))
        orders.append(order.tolist())
    assert orders[0] != orders[1]                                 # reshuffled every epoch
    plain = [b["index"].tolist() for b in Batches(cache.dataset(train), 5, torch.device("cpu"))]
    assert sum(plain, []) == list(range(len(train)))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_by_hand_equals_pil_and_torchvision(tmp_path, orientation):
    """The GPU decoder ignores EXIF orientation, so the cache orients by hand on every
    device: equal to PIL's exif_transpose (lossless PNG) and to torchvision's own CPU
    handling (JPEG), for all eight orientations."""
    import warnings

    from PIL import Image, ImageOps
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    from core.classification.image_cache import exif_orientation, orient
    pixels = np.random.default_rng(orientation).integers(0, 256, (7, 12, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    png, jpg = tmp_path / "a.png", tmp_path / "a.jpg"
    Image.fromarray(pixels).save(png, exif=exif)
    Image.fromarray(pixels).save(jpg, quality=90, exif=exif)
    assert exif_orientation(png) == exif_orientation(jpg) == orientation
    want = np.asarray(ImageOps.exif_transpose(Image.open(png)))
    got = orient(torch.from_numpy(pixels).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        data = read_file(str(jpg))
        ref = decode_jpeg(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
        mine = orient(decode_jpeg(data, mode=ImageReadMode.RGB), exif_orientation(jpg))
    assert torch.equal(mine, ref)
