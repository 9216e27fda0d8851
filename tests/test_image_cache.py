"""The preprocessed image cache: same pixels as PoseDataset, built once, atomic, keyed."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.errors import DataError  # noqa: E402
from core.image_cache import (CHUNK, ImageCache, build_image_cache, cache_stem,  # noqa: E402
                              normalize_uint8)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    from core.data.infiniteform import load_infiniteform
    from core.data.synthetic import write_image_dataset
    root = tmp_path_factory.mktemp("ic")
    write_image_dataset(root / "data", n_train=12, n_test=4, seed=1, size=96, people_max=3, progress=False)
    return load_infiniteform(root / "data")


def _all(index):
    return [s for k in ("train", "val", "test") for s in index.splits[k]]


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_equals_posedataset(index, tmp_path, monkeypatch, workers):
    """Pool (fork, several chunks) or in-process: every item equals PoseDataset's."""
    from core.data.infiniteform import PoseDataset
    import core.image_cache as ic
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
