"""Where a classifier's ResNet-50 weights come from, and how a run finds them again.

The sources, tried in this order (``resolve_backbone``):

1. ``weights=FILE``: a torchvision ResNet-50 state dict as ``.safetensors`` or a torch file
   read with ``torch.load(weights_only=True)`` (never unpickles arbitrary objects).
2. ImageNet: ``ResNet50_Weights.IMAGENET1K_V2`` through torchvision's weights API, from
   torch's cache; when it is not cached, one download is tried only if the host answers
   within a few seconds (offline it fails fast instead of hanging). ``POSELAB_OFFLINE=1``
   skips the download, and so does running under pytest (tests never download).
3. The PoseLab backbone shipped in ``checkpoints/_poselab/`` (``python -m core pretrain``
   on PoseLab's own renders; fp16 safetensors with a JSON card beside it saying how it was
   made). run.json says ``backbone.source = "poselab"`` and carries the card; every page
   names it "PoseLab synthetic pretraining", never mistakable for ImageNet.
4. A seeded random init, only when asked for (``weights="random"``), announced by one
   ``WARNING`` line on stderr and recorded in run.json (``backbone.source = "random"``,
   ``backbone.warning``). With none of 1-3 and no request, resolving is an error that says
   what to do: a random init is never picked silently.

Weights are used in float32 whatever they were stored in.

A random init is unusable as it comes: with BatchNorm's default statistics (mean 0, var 1)
nothing is normalised and activations grow ~10x through the 16 blocks, so the pooled
features are huge, a trainable fc diverges under Adam at lr 1e-3, and the 51 keypoint
inputs are drowned by the fc's outputs. ``calibrate_batchnorm`` therefore re-estimates the
BN statistics on training crops (what any pretrained backbone already has); training
calls it for random backbones (``core.classification.train``), recording it in ``backbone.weights``.

A backbone that exists nowhere else (the random init, or a file's missing fc completed
randomly) is stored once, content-addressed, at ``<runs_dir>/_backbones/<sha256>.safetensors``
so every run that references it stays loadable when torch's RNG changes.

run.json ``backbone`` = {source, weights, sha256, stored, warning}; ``backbone_id`` (the
sha256 prefix) keys the feature cache.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import socket
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torchvision.models import ResNet50_Weights, resnet50

from core.classification.model import ClassifierConfig, PoseClassifier, build_classifier, load_trained_weights
from core.errors import DataError, RunError
from core.io import atomic_write, read_json, sha256_file
from core.runs import RUN_JSON, WEIGHTS, Run, load_weights

IMAGENET = "ResNet50_Weights.IMAGENET1K_V2"
BACKBONES_DIR = "_backbones"
REPO = Path(__file__).resolve().parents[2]
SHIPPED_DIR = REPO / "checkpoints" / "_poselab"   # the PoseLab backbone (weights + card)
NAMED = ("imagenet", "poselab", "random")
_DOWNLOAD_HOST = ("download.pytorch.org", 443)

_random_cache: dict[int, tuple[dict[str, torch.Tensor], bytes, str]] = {}


def backbone_id(info: dict) -> str:
    """Short, stable id of a backbone's weights (feature-cache key)."""
    return str(info["sha256"])[:16]


def resolve_backbone(weights: str | Path | None = None, *, runs_dir: str | Path, seed: int = 0,
                     ) -> tuple[dict[str, torch.Tensor], dict]:
    """(ResNet-50 state dict with ``fc.*``, run.json ``backbone`` info) for a new run.

    ``weights``: a file path, ``"imagenet"`` / ``"poselab"`` (fail unless available),
    ``"random"``, or None (ImageNet when it can be had, else the shipped PoseLab backbone,
    else a DataError: a random init is never picked silently).
    """
    runs_dir = Path(runs_dir)
    name = None if weights is None else str(weights)
    if name is not None and name not in NAMED:
        return _from_file(Path(weights), runs_dir, seed)
    why_not = ""
    if name in (None, "imagenet"):
        state, why_not = _imagenet_state()
        if state is not None:
            sha = sha256_file(_imagenet_cache_file())
            return state, dict(source="imagenet", weights=IMAGENET, sha256=sha, stored=None, warning=None)
        if name == "imagenet":
            raise DataError(None, f"ImageNet weights requested but unavailable: {why_not}")
    if name in (None, "poselab"):
        shipped = shipped_backbone()
        if shipped is not None:
            return _poselab(shipped)
        if name == "poselab":
            raise DataError(SHIPPED_DIR, "no PoseLab backbone here (resnet50-*.safetensors with its "
                                         ".card.json); make one with python -m core pretrain")
    if name is None:
        raise DataError(SHIPPED_DIR, f"no backbone: no ImageNet weights ({why_not}) and no PoseLab backbone "
                                     "(resnet50-*.safetensors with its .card.json; restore checkpoints/ from the "
                                     "repository or make one with python -m core pretrain); pass --weights FILE, "
                                     "or --weights random for a seeded random init")
    warning = f"random ResNet-50 backbone requested (seed {seed}); accuracy will be far below the paper's"
    print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    state, blob, sha = _random_state(seed)
    stored = _store(blob, sha, runs_dir)
    return state, dict(source="random", weights=f"seed={seed}", sha256=sha, stored=stored, warning=warning)


def shipped_backbone(folder: Path | None = None) -> Path | None:
    """The PoseLab backbone in ``folder`` (default ``SHIPPED_DIR``): the newest
    ``resnet50-*.safetensors`` that has its ``.card.json`` beside it, or None."""
    folder = Path(folder or SHIPPED_DIR)
    found = sorted((p for p in folder.glob("resnet50-*.safetensors") if card_path(p).is_file()),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def card_path(weights: Path) -> Path:
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".card.json")


def read_card(weights: Path) -> dict:
    """The card of a PoseLab backbone (how it was made); RunError when it is unreadable."""
    return read_json(card_path(weights), error=RunError)


def _poselab(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    state = _read_weights_file(path, DataError)
    card = read_card(path)
    sha = sha256_file(path)
    if card.get("sha256") and card["sha256"] != sha:
        raise DataError(path, "does not match its card (sha256 differs): the file was changed after it was made")
    rel = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
    return state, dict(source="poselab", weights=rel, sha256=sha, stored=None, warning=None, card=card)


def load_backbone(info: dict, *, runs_dir: str | Path, where: str | Path) -> dict[str, torch.Tensor]:
    """The backbone state a finished run recorded in run.json (``where`` names that file)."""
    runs_dir = Path(runs_dir)
    stored = info.get("stored")
    if stored:
        path = runs_dir / stored
        if path.is_file():
            return _load_safetensors(path, RunError)
        raise RunError(where, f"backbone weights {stored} are missing from {runs_dir}")
    source = info.get("source")
    if source == "poselab":
        path = Path(info.get("weights", ""))
        path = path if path.is_absolute() else REPO / path
        if not path.is_file():
            raise RunError(where, f"the run's PoseLab backbone {path} is missing")
        if info.get("sha256") and sha256_file(path) != info["sha256"]:
            raise RunError(where, f"the PoseLab backbone {path} changed since the run (sha256 differs)")
        return _read_weights_file(path, RunError)
    if source == "imagenet":
        state, why_not = _imagenet_state()
        if state is None:
            raise RunError(where, f"run used ImageNet weights, which are unavailable now: {why_not}")
        return state
    if source == "file":
        path = Path(info.get("weights", ""))
        if not path.is_file():
            raise RunError(where, f"backbone weights file {path} is missing")
        if info.get("sha256") and sha256_file(path) != info["sha256"]:
            raise RunError(where, f"backbone weights file {path} changed since the run (sha256 differs)")
        return _read_weights_file(path, RunError)
    raise RunError(where, f"no usable backbone record (source {source!r})")


def calibrate_batchnorm(state: dict[str, torch.Tensor], batches, *, device: torch.device,
                        ) -> dict[str, torch.Tensor]:
    """``state`` with every BatchNorm's running mean/var re-estimated over ``batches`` of
    images (B, 3, S, S): a cumulative average (momentum None), weights untouched."""
    with torch.device("meta"):
        net = resnet50(weights=None)
    net.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True, assign=True)
    net = net.to(device)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        for images in batches:
            net(images.to(device))
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


def store_backbone(state: dict[str, torch.Tensor], runs_dir: str | Path) -> tuple[str, str]:
    """Store a backbone content-addressed; returns (sha256, path relative to runs_dir)."""
    blob = save({k: v.contiguous() for k, v in state.items()})
    sha = hashlib.sha256(blob).hexdigest()
    return sha, _store(blob, sha, Path(runs_dir))


# ----------------------------------------------------------------------------- sources

def _imagenet_cache_file() -> Path:
    url = ResNet50_Weights.IMAGENET1K_V2.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _imagenet_state() -> tuple[dict[str, torch.Tensor] | None, str]:
    """(state, "") when available, else (None, why not). Never blocks for long offline."""
    cached = _imagenet_cache_file()
    if not cached.is_file():
        if os.environ.get("POSELAB_OFFLINE") or os.environ.get("PYTEST_CURRENT_TEST"):
            return None, f"not in torch's cache ({cached}); downloads are off (offline or under test)"
        try:
            socket.create_connection(_DOWNLOAD_HOST, timeout=3).close()
        except OSError as e:
            return None, f"not in torch's cache ({cached}) and {_DOWNLOAD_HOST[0]} unreachable ({e})"
    try:
        return ResNet50_Weights.IMAGENET1K_V2.get_state_dict(progress=True), ""
    except Exception as e:  # network errors, a corrupt cache file: fall back, loudly
        return None, f"torchvision could not load them ({type(e).__name__}: {e})"


def _random_state(seed: int) -> tuple[dict[str, torch.Tensor], bytes, str]:
    if seed not in _random_cache:
        with torch.random.fork_rng(devices=[]):   # leave the caller's RNG stream untouched
            torch.manual_seed(seed)
            state = {k: v.contiguous() for k, v in resnet50(weights=None).state_dict().items()}
        blob = save(state)
        _random_cache[seed] = (state, blob, hashlib.sha256(blob).hexdigest())
    return _random_cache[seed]


def _store(blob: bytes, sha: str, runs_dir: Path) -> str:
    rel = f"{BACKBONES_DIR}/{sha}.safetensors"
    path = runs_dir / rel
    if not path.is_file():                         # content-addressed: same name, same bytes
        with atomic_write(path) as f:
            f.write(blob)
    return rel


def _from_file(path: Path, runs_dir: Path, seed: int) -> tuple[dict[str, torch.Tensor], dict]:
    state = _read_weights_file(path, DataError)
    info = dict(source="file", weights=str(path.resolve()), sha256=sha256_file(path), stored=None,
                warning=None)
    if card_path(path).is_file():
        # a PoseLab backbone kept as a file (an earlier one, restored from the history): its
        # card says how it was made, and runs on it show that
        card = read_card(path)
        if card.get("sha256") and card["sha256"] != info["sha256"]:
            raise DataError(path, "does not match its card (sha256 differs): the file was changed after it was made")
        info["card"] = card
    if not {"fc.weight", "fc.bias"} <= set(state):
        # Backbone-only checkpoints (self-supervised ones) lack the ImageNet fc: complete it
        # from the seeded init and store the result, which now exists nowhere else.
        rnd, _, _ = _random_state(seed)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        state = {**state, "fc.weight": rnd["fc.weight"], "fc.bias": rnd["fc.bias"]}
        blob = save({k: v.contiguous() for k, v in state.items()})
        sha = hashlib.sha256(blob).hexdigest()
        info.update(sha256=sha, stored=_store(blob, sha, runs_dir),
                    warning=f"{path.name} has no fc layer: fc initialised randomly (seed {seed})")
        print(f"WARNING: {info['warning']}", file=sys.stderr, flush=True)
    return state, info


def _read_weights_file(path: Path, error: type) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise error(path, "weights file does not exist")
    if path.suffix == ".safetensors":
        state = _load_safetensors(path, error)
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            # torch's message (ANSI bold, several lines) advises weights_only=False, i.e.
            # running whatever the file holds; the one line here names what it wanted.
            wanted = re.search(r"GLOBAL ([\w.]+)", str(e))
            raise error(path, "holds pickled Python objects, not only tensors"
                              + (f" (it needs {wanted[1]})" if wanted else "")
                              + "; PoseLab never unpickles a file it is given: save the state dict with "
                                "safetensors.torch.save_file(...) and pass the .safetensors file") from None
        except Exception as e:  # truncated files, not a torch file at all
            raise error(path, f"not a loadable torch weights file ({type(e).__name__}: {_first_sentence(e)})") from None
        for key in ("state_dict", "model"):       # common checkpoint wrappers
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise error(path, "expected a state dict (name -> tensor)")
        state = obj
    state = {k.removeprefix("module."): (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    _check_resnet50(state, path, error)
    return state


def _first_sentence(e: BaseException) -> str:
    """A library's message cut to its first sentence, on one line, without ANSI codes."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(e)).split())
    return (re.split(r"(?<=\.)\s", text, maxsplit=1)[0] or type(e).__name__)[:200]


def _load_safetensors(path: Path, error: type) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as e:
        raise error(path, f"not a readable safetensors file ({e})") from None


def _check_resnet50(state: dict[str, torch.Tensor], path: Path, error: type) -> None:
    with torch.device("meta"):                     # shapes only: no memory, no init time
        ref = resnet50(weights=None).state_dict()
    ref_body = {k for k in ref if not k.startswith("fc.")}
    missing = sorted(ref_body - set(state))
    extra = sorted(set(state) - set(ref))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise error(path, f"not a torchvision ResNet-50 state dict ({detail})")
    # the fc may have any width (ImageNet's 1000 classes, a pretraining's own), not any shape
    width = state["fc.weight"].shape[0] if "fc.weight" in state else 1000
    ref["fc.weight"], ref["fc.bias"] = torch.empty(width, 2048, device="meta"), torch.empty(width, device="meta")
    for k, v in state.items():
        if tuple(v.shape) != tuple(ref[k].shape):
            raise error(path, f"not a ResNet-50 state dict: {k} has shape {tuple(v.shape)}, "
                              f"ResNet-50 needs {tuple(ref[k].shape)}")


def classifier_from_run(run: Run) -> PoseClassifier:
    """A finished classifier run's model, rebuilt from its folder alone: its config, its
    trained parts and the backbone its run.json records (CPU, train mode)."""
    try:
        cfg = ClassifierConfig.from_dict(run.info.config["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(run.path / RUN_JSON, f"no usable classifier config ({e})") from None
    if run.info.backbone is None:
        raise RunError(run.path / RUN_JSON, "records no backbone")
    backbone = load_backbone(run.info.backbone.to_dict(), runs_dir=run.path.parent, where=run.path / RUN_JSON)
    model = build_classifier(cfg, backbone)
    load_trained_weights(model, load_weights(run.path / WEIGHTS), run.path / WEIGHTS)
    return model
