"""``python -m core pretrain``: a ResNet-50 that has seen bodies, trained from scratch on
PoseLab's own renders, shipped as the backbone whenever ImageNet weights are absent.

Data: ``core.classification.pretrain_data`` (crops cut exactly like the classifier's, from
scenes of a seed no demo, test or default dataset uses). Model: torchvision's ResNet-50
(zero-init residual branches), its pooled 2048-d feature -> ONE linear layer -> the task's
outputs. Every paper preset consumes exactly that pooled feature (frozen, through the fc
and a small head), so a task that must be read linearly off it is what shapes it for them;
a spatial head on layer4 would leave the pooled feature free to discard the pose.

Tasks (``--task``), on scenes whose people take the poses of one class family
(``--classes``, ``core.classification.pretrain_data``):

* ``pose+classes`` (the default): camera-frame and view-invariant 3D joints, 2D keypoints
  in the crop and their visibility, for all 27 body joints, plus the person's pose class.
* ``pose``: the pose targets alone (label-free); ``classes``: the class alone.

With ``--classes pretrain`` (the default) the classes are the pretraining family, which no
demo, test or default dataset contains: the backbone knows bodies and has never seen the
fifteen classes the demo scores, the position ImageNet is in for InfiniteForm. Its class
head (2048 -> one logit per pretraining class) ships as the backbone's ``fc``, so a
frozen "final layer" (the paper's model1 and model3) outputs the logits of *other* classes,
as ImageNet's 1000 do. ``--classes demo`` trains on the fifteen themselves (the backbone
before this one); its head is never shipped, since a frozen fc that already held the
demo's classes would answer "does a trainable fc help?" before it is asked, so it ships
torchvision's seeded fc init instead, as does the label-free ``pose`` task.

Training is ``core.engine.fit`` (resumable per epoch in ``<out>.work/``, torchrun like the
other trainers): AdamW, one-cycle learning rate per step (3 % warm-up, cosine), batch 64,
horizontal flip with left/right swapped, the person pasted on another sample's background,
optionally Gaussian pixel noise (``--pixel-noise``; the shipped backbone used 0.2), bf16
autocast (also on a CPU that computes bf16 natively, ``engine.cpu_bf16``: twice ResNet-50's
float32 training speed there; emulated bf16 is far slower than float32, both
measured). Export: BatchNorm statistics re-estimated on clean crops with the final
weights, the trained body with its fc (above), saved as fp16 safetensors with a JSON card
beside it that lists every class and target trained on (``core.classification.backbones``
reads both).
"""
from __future__ import annotations

import hashlib
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torchvision.models import resnet50
from tqdm.auto import tqdm

from core import distributed as D
from core import engine
from core.classification.backbones import SHIPPED_DIR, card_path
from core.classification.pretrain_data import Crops, DataConfig, J, data_summary, render_data
from core.errors import DataError
from core.io import atomic_path, sha256_file, write_json
from core.runs import DataInfo, RunInfo, git_commit

TASKS = ("pose", "pose+classes", "classes")
HEAD = {"cam3d": 3 * J, "canon3d": 3 * J, "kp2d": 2 * J, "vis": 3 * J}   # the pose outputs
POSE_DIM = sum(HEAD.values())                                           # 297
SCALE_3D = 0.2                # root-relative joints / height have a std of about 0.2
DEFAULT_OUT = SHIPPED_DIR / "resnet50-poselab.safetensors"
HISTORY_COLUMNS = ["epoch", "train_loss", "train_score", "val_loss", "val_score", "lr", "seconds"]


@dataclass(frozen=True)
class PretrainConfig:
    task: str = "pose+classes"     # pose+classes | pose (label-free) | classes
    epochs: int = 3                # passes over the training crops
    batch_size: int = 64
    lr: float = 1e-3               # AdamW peak learning rate (one-cycle)
    weight_decay: float = 0.05     # not on BatchNorm parameters and biases
    warmup: float = 0.03           # share of the steps with a linear warm-up
    flip: bool = True              # horizontal flip, left/right joints swapped
    background_swap: float = 0.8   # share of crops pasted onto another crop's background
    # Gaussian pixel noise, std per crop uniform in [0, pixel_noise] of the 0-255 range (0 =
    # off). Training with input noise penalises the input gradient (Bishop 1995): features
    # that answer to pixel-level texture rather than to the body cost loss.
    pixel_noise: float = 0.2
    bf16: bool = True              # bf16 autocast (on a CPU only where it is native: engine.cpu_bf16)
    val_fraction: float = 0.02     # last scenes held out
    bn_samples: int = 2048         # clean crops that set the exported BatchNorm statistics


def head_dim(task: str, num_classes: int) -> int:
    return {"pose": POSE_DIM, "classes": num_classes, "pose+classes": POSE_DIM + num_classes}[task]


def split_outputs(out: torch.Tensor, task: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The head's outputs (B, D) as (pose outputs (B, POSE_DIM) or None, class logits (B, C)
    or None): the pose block first, the classes after it."""
    if task == "pose":
        return out, None
    if task == "classes":
        return None, out
    return out[:, :POSE_DIM], out[:, POSE_DIM:]


def build_network(task: str, num_classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = resnet50(weights=None, zero_init_residual=True)
    net.fc = nn.Linear(2048, head_dim(task, num_classes))
    nn.init.normal_(net.fc.weight, std=0.01)
    nn.init.zeros_(net.fc.bias)
    return net


def loss_terms(out: torch.Tensor, tg: dict, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss as (sums, counts) per part, so that ``D.global_mean`` can pool them: the
    loss is the sum of the parts' means (each of order 1 at init)."""
    b = out.shape[0]
    pose, logits = split_outputs(out.float(), task)
    sums, counts = [], []
    if logits is not None:
        sums.append(F.cross_entropy(logits, tg["label"], reduction="sum"))
        counts.append(torch.tensor(float(b)))
    if pose is not None:
        o = dict(zip(HEAD, pose.split(list(HEAD.values()), dim=1)))
        for k in ("cam3d", "canon3d"):
            sums.append(F.smooth_l1_loss(o[k].reshape(b, J, 3), tg[k] / SCALE_3D, beta=0.5, reduction="sum"))
            counts.append(torch.tensor(float(b * J * 3)))
        seen = (tg["vis"] > 0).float()                                    # (B, J) in frame
        d2 = F.smooth_l1_loss(o["kp2d"].reshape(b, J, 2), (tg["kp2d"] - 0.5) / 0.25, beta=0.5,
                              reduction="none").sum(-1)
        sums.append((d2 * seen).sum())
        counts.append(2 * seen.sum())
        sums.append(0.5 * F.cross_entropy(o["vis"].reshape(b * J, 3), tg["vis"].reshape(-1), reduction="sum"))
        counts.append(torch.tensor(float(b * J)))
    return torch.stack(sums), torch.stack(counts).to(out.device)


@torch.no_grad()
def held_out_scores(out: torch.Tensor, tg: dict, task: str) -> dict[str, float]:
    """Held-out scores in interpretable units: MPJPE in % of body height (both 3D
    targets), 2D error in % of the crop on in-frame joints, visibility and class accuracy."""
    b, m = out.shape[0], {}
    pose, logits = split_outputs(out.float(), task)
    if logits is not None:
        m["class_accuracy"] = float((logits.argmax(1) == tg["label"]).float().mean())
    if pose is not None:
        o = dict(zip(HEAD, pose.split(list(HEAD.values()), dim=1)))
        for k in ("cam3d", "canon3d"):
            m[f"{k}_mpjpe_pct_height"] = float((o[k].reshape(b, J, 3) * SCALE_3D - tg[k]).norm(dim=-1).mean() * 100)
        seen = tg["vis"] > 0
        e2 = (o["kp2d"].reshape(b, J, 2) * 0.25 + 0.5 - tg["kp2d"]).norm(dim=-1)
        m["kp2d_error_pct_crop"] = float(e2[seen].mean() * 100)
        m["visibility_accuracy"] = float((o["vis"].reshape(b, J, 3).argmax(-1) == tg["vis"]).float().mean())
    return {k: round(v, 4) for k, v in m.items()}


def one_cycle(step: int, total: int, warmup: float) -> float:
    w = max(1, int(total * warmup))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))


def param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for p in net.parameters() if p.ndim > 1]
    rest = [p for p in net.parameters() if p.ndim <= 1]               # BN weights and biases, fc bias
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def train_one_epoch(net: nn.Module, data: Crops, batches, optimizer, cfg: PretrainConfig, device: torch.device,
                    *, epoch: int, steps_per_epoch: int, total_steps: int, seed: int,
                    progress: bool) -> engine.EpochScore:
    net.train()
    finite = engine.FiniteLoss(device, f"pretraining epoch {epoch}")
    loss_sum, n = torch.zeros((), device=device), 0
    for k, (idx, padding) in enumerate(tqdm(batches, desc=f"epoch {epoch}", disable=not progress, leave=False)):
        step = (epoch - 1) * steps_per_epoch + k
        for g in optimizer.param_groups:
            g["lr"] = cfg.lr * one_cycle(step, total_steps, cfg.warmup)
        gen = torch.Generator().manual_seed(engine.epoch_seed(seed, step))       # this batch's augmentations
        rows = data.train_rows[idx]
        flip = torch.rand(len(rows), generator=gen) < 0.5 if cfg.flip else None
        x, tg = data.batch(rows, flip=flip, swap=cfg.background_swap, noise=cfg.pixel_noise, gen=gen)
        x, tg = x.to(device, non_blocking=True), {t: v.to(device) for t, v in tg.items()}
        with engine.autocast(device, cfg.bf16, cpu=True):
            out = net(x)
        sums, counts = loss_terms(out, tg, cfg.task)
        if padding:                                                       # a torchrun padding share
            sums = sums * 0
        shares, _ = D.global_mean(sums, counts * (0 if padding else 1))
        loss = shares.sum()
        finite.update(loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() / D.world_size()
        n += 1
    finite.check()
    (loss_sum,) = D.all_reduce_sum(loss_sum)
    loss = float(loss_sum / max(n, 1))
    return engine.EpochScore(loss=loss, score=-loss, count=n)


@dataclass
class HeldOut:
    """``evaluate``'s result: the validation loss (its negative picks the best epoch) and
    the held-out scores in interpretable units (``held_out_scores``)."""
    loss: float
    count: int
    scores: dict = field(default_factory=dict)

    @property
    def score(self) -> float:
        return -self.loss

    def to_dict(self) -> dict:
        return {"loss": self.loss, "score": self.score, "count": self.count, **self.scores}


@torch.no_grad()
def evaluate(net: nn.Module, data: Crops, cfg: PretrainConfig, device: torch.device, *, limit: int | None = 2048,
             batch_size: int = 128) -> HeldOut:
    """Validation loss and the held-out scores on the first ``limit`` validation crops."""
    net = D.unwrap(net)
    net.eval()
    rows = data.val_rows if limit is None else data.val_rows[:limit]
    outs, tgs = [], []
    for a in range(0, len(rows), batch_size):
        x, tg = data.batch(rows[a:a + batch_size])
        with engine.autocast(device, cfg.bf16, cpu=True):
            outs.append(net(x.to(device)).float().cpu())
        tgs.append(tg)
    if not outs:
        return HeldOut(float("nan"), 0)
    out, tg = torch.cat(outs), {k: torch.cat([t[k] for t in tgs]) for k in tgs[0]}
    sums, counts = loss_terms(out, tg, cfg.task)
    return HeldOut(float((sums / counts.clamp(min=1)).sum()), len(rows), held_out_scores(out, tg, cfg.task))


# ----------------------------------------------------------------------------- export

@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, data: Crops, n: int, batch: int = 64) -> None:
    """BatchNorm running statistics = the plain average over ``n`` clean training crops
    with the final weights (float32, no augmentation): what the frozen backbone will see."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    rows = data.train_rows[:n]
    for a in range(0, len(rows) - batch + 1, batch):
        net(data.batch(rows[a:a + batch])[0])
    net.eval()


def ships_head(task: str, classes: str) -> bool:
    """Whether the trained class head ships as the backbone's fc (module docstring)."""
    return task != "pose" and classes != "demo"


def torchvision_state(net: nn.Module, task: str, classes: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A full torchvision ResNet-50 state dict: the trained body and its fc, which is the
    class head's rows (one logit per pretraining class) when ``ships_head``, else
    torchvision's own seeded fc init (2048 -> 1000)."""
    state = {k: v.detach().clone() for k, v in net.state_dict().items() if not k.startswith("fc.")}
    if ships_head(task, classes):
        rows = slice(POSE_DIM, None) if task == "pose+classes" else slice(None)
        state["fc.weight"] = net.fc.weight.detach()[rows].clone()
        state["fc.bias"] = net.fc.bias.detach()[rows].clone()
        return state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ref = resnet50(weights=None).fc
    state["fc.weight"], state["fc.bias"] = ref.weight.detach().clone(), ref.bias.detach().clone()
    return state


def export(net: nn.Module, data: Crops, cfg: PretrainConfig, classes: str, out: Path, card: dict) -> dict:
    """Write ``out`` (fp16 safetensors) and its card; returns the card."""
    net = net.float().to(memory_format=torch.contiguous_format).cpu()
    recalibrate_batchnorm(net, data, cfg.bn_samples)
    state = torchvision_state(net, cfg.task, classes)
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"poselab_pretrain": json.dumps({k: card[k] for k in ("task", "data")})})
    shipped = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    # the held-out scores of what ships: its fp16 body (and class rows), the pose rows as trained
    head = {"weight": net.fc.weight.detach().clone(), "bias": net.fc.bias.detach().clone()}
    if ships_head(cfg.task, classes):
        rows = slice(POSE_DIM, None) if cfg.task == "pose+classes" else slice(None)
        head["weight"][rows], head["bias"][rows] = shipped["fc.weight"], shipped["fc.bias"]
    net.load_state_dict({**{k: v for k, v in shipped.items() if not k.startswith("fc.")},
                         "fc.weight": head["weight"], "fc.bias": head["bias"]})
    card = {**card, "held_out": evaluate(net, data, cfg, torch.device("cpu"), limit=None).to_dict(),  # of what ships
            "sha256": sha256_file(out), "bytes": out.stat().st_size}
    write_json(card_path(out), card)
    return card


def trained_on(task: str, data: DataConfig) -> dict:
    """The card's record of every label and target the backbone was trained on, and what
    its fc outputs."""
    targets = ([f"{k} ({HEAD[k]} values: {TARGET_NOTES[k]})" for k in HEAD] if task != "classes" else [])
    classes = list(data.class_names) if task != "pose" else []
    if ships_head(task, data.classes):
        fc = f"the pretraining class head: one logit per class of classes ({len(classes)})"
    else:
        fc = "torchvision's seeded init (2048 -> 1000), not trained"
    return {"labels_used": (f"the {len(classes)} classes of the {data.classes!r} family" if classes
                            else "none (label-free)"),
            "class_family": data.classes if classes else None, "classes": classes, "targets": targets, "fc": fc}


TARGET_NOTES = {"cam3d": "27 joints in the camera frame", "canon3d": "27 joints, view-invariant",
                "kp2d": "27 projected joints in the crop", "vis": "27 joints: outside, occluded, visible"}


# ----------------------------------------------------------------------------- the command

@dataclass(frozen=True)
class PretrainJob:
    """What ``python -m core pretrain`` runs."""
    out: Path = DEFAULT_OUT                    # weights file (.safetensors; its card is written beside it)
    data: DataConfig = DataConfig()            # the renders
    train: PretrainConfig = PretrainConfig()   # the recipe
    device: str = "auto"                       # auto = CUDA when there is one
    seed: int = 0                              # network init and batch order (the renders have data.seed)
    workers: int | None = None                 # rendering processes (None: one per CPU)
    progress: bool = True
    command: tuple[str, ...] = ("python", "-m", "core", "pretrain")   # as typed, for the card


def pretrain(job: PretrainJob) -> dict:
    """Render (or reuse) the data, train (resuming a killed run of the same settings in
    ``<out>.work/``, through ``engine.RunLifecycle``), export ``out`` and its card; returns
    the card (an empty dict on torchrun's other ranks)."""
    # The command's steps in order (render, train, export), each a few lines.
    data, cfg, seed = job.data, job.train, job.seed
    if cfg.task not in TASKS:
        raise DataError(None, f"unknown pretraining task {cfg.task!r}; choose from {', '.join(TASKS)}")
    if not 0 <= cfg.pixel_noise <= 1:
        raise DataError(None, f"--pixel-noise is a share of the 0-255 range, 0..1 (got {cfg.pixel_noise})")
    out = Path(job.out).expanduser().resolve()
    if out.suffix != ".safetensors":
        raise DataError(out, "--out must name a .safetensors file (its card is written beside it)")
    t0 = time.perf_counter()
    dev, progress = engine.setup(job.device, job.progress)
    work = out.with_name(f".{out.stem}.work")
    with D.main_process_first():
        shards = render_data(data, work / "data", workers=job.workers, progress=progress)
    t_render = time.perf_counter() - t0
    crops = Crops(shards, cfg.val_fraction, engine.memory_format(dev))
    fingerprint = hashlib.sha256(json.dumps(asdict(data), sort_keys=True).encode()).hexdigest()[:16]
    info = RunInfo(kind="pretrain", name=cfg.task, config={"data": asdict(data), "train": asdict(cfg)},
                   data=DataInfo(root=str(work / "data"), fingerprint=fingerprint, num_train=len(crops.train_rows),
                                 num_val=len(crops.val_rows)), seed=seed, device=str(dev), distributed=D.describe())
    with engine.RunLifecycle.open(work / "runs", info, HISTORY_COLUMNS) as run:
        net = build_network(cfg.task, len(data.class_names), seed).to(dev).to(memory_format=engine.memory_format(dev))
        if run.resumed_model is not None:
            net.load_state_dict(run.resumed_model)
        train_net = D.wrap_ddp(net, dev)
        batches = D.GlobalBatches(len(crops.train_rows), cfg.batch_size, shuffle=True, seed=seed)
        optimizer = torch.optim.AdamW(param_groups(net, cfg.weight_decay), lr=cfg.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)   # the lr is set per step
        steps = len(batches)
        state = engine.fit(engine.FitPlan(
            optimizer=optimizer, scheduler=scheduler, epochs=cfg.epochs, seed=seed, metric="score",
            batches=batches, weights=net.state_dict,
            train_epoch=lambda e: train_one_epoch(train_net, crops, batches, optimizer, cfg, dev, epoch=e,
                                                  steps_per_epoch=steps, total_steps=steps * cfg.epochs, seed=seed,
                                                  progress=progress),
            evaluate=lambda e: evaluate(net, crops, cfg, dev)),
            run.state, on_epoch=run.epoch_writer(net.state_dict), progress=progress)
        if not D.is_main_process():
            return {}
        net.load_state_dict(state.best_weights)
        card = {"command": shlex.join(job.command), "code_version": git_commit(), "task": cfg.task,
                **trained_on(cfg.task, data),
                "data": {**asdict(data), **data_summary(shards), "train_samples": len(crops.train_rows),
                         "val_samples": len(crops.val_rows)},
                "train": asdict(cfg), "epochs": cfg.epochs, "image_size": data.image_size, "seed": seed,
                "device": str(dev), "processes": D.world_size(), "torch": torch.__version__,
                "history": state.history,
                "wall_seconds": {"render": round(t_render, 1),
                                 "train": round(sum(r["seconds"] for r in state.history), 1)}}
        t2 = time.perf_counter()
        card = export(net, crops, cfg, data.classes, out, card)
        card["wall_seconds"]["export"] = round(time.perf_counter() - t2, 1)
        card["wall_seconds"]["total_this_call"] = round(time.perf_counter() - t0, 1)
        write_json(card_path(out), card)
        run.finish({"headline": "val_loss", "val_loss": state.history[-1]["val_loss"], **card["held_out"]})
    if progress:
        print(f"wrote {out} ({card['bytes'] / 2**20:.0f} MB) and {card_path(out).name}: held-out "
              + ", ".join(f"{k} {v}" for k, v in card["held_out"].items() if k not in ("loss", "score", "count")),
              file=sys.stderr)
    return card
