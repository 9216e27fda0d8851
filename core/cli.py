"""``python -m core ...``: the command line (README, "Command line"; every command's ``--help``).

This file only parses arguments and calls one library function per command; the work
happens in the library. Any ``PoseLabError`` (bad input) ends with one line on stderr
and exit code 2. Heavy modules (torch) are imported only by the command that needs them.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from core.errors import PoseLabError


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one line naming the command and the
    problem, exit code 2 (argparse's own prints the usage first)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _int_range(lo: int, hi: int | None = None):
    """An argparse type: an integer in [lo, hi] (argparse then says which flag is wrong)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{v} is outside {lo}..{hi if hi is not None else 'any'}")
        return v
    return parse


def _float_range(lo: float, hi: float | None = None, *, above: bool = False):
    """An argparse type: a finite float >= lo (> lo with ``above``) and <= hi."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if not math.isfinite(v) or v < lo or (above and v == lo) or (hi is not None and v > hi):
            bound = f"{'>' if above else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
            raise argparse.ArgumentTypeError(f"{v:g} must be {bound}")
        return v
    return parse


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. hidden=32, not {text!r}")
    return key.strip(), value.strip()


def _add_common_train(p: argparse.ArgumentParser, grid: bool) -> None:
    p.add_argument("--data", type=Path, required=True,
                   help="dataset folder or its annotation file")
    p.add_argument("--epochs", type=_int_range(0, 100_000), default=None, help="default: the preset's/paper's")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto = CUDA when available")
    p.add_argument("--runs", type=Path, default=None,
                   help="folder that receives the run folders (default: $POSELAB_RUNS or checkpoints/)")
    p.add_argument("--seed", type=_int_range(0), default=0, help="the (first) seed")
    if grid:
        p.add_argument("--seeds", type=_int_range(1, 1000), default=1,
                       help="train every variant this many times, seeds --seed .. --seed + N - 1 "
                            "(tables then show the mean and a 95%% interval across seeds)")
    p.add_argument("--batch-size", type=_int_range(1, 65_536), default=None)
    p.add_argument("--lr", type=_float_range(0, above=True), default=None)


def build_parser() -> argparse.ArgumentParser:
    # The whole command line in one place, read top to bottom like its --help.
    parser = _Parser(prog="python -m core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="embedded default: synthetic data + every run the dashboard needs")
    p.add_argument("--data-dir", type=Path, default=Path("data/demo"),
                   help="where the synthetic datasets go (default: data/demo)")
    p.add_argument("--runs", type=Path, default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")

    synth = sub.add_parser("synth", help="write a synthetic dataset").add_subparsers(
        dest="what", required=True)
    p = synth.add_parser("images", help="fitness-pose images in InfiniteForm's layout")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train", type=_int_range(0), default=2000)
    p.add_argument("--test", type=_int_range(0), default=500)
    p.add_argument("--seed", type=_int_range(0), default=0)
    p.add_argument("--size", type=_int_range(32, 4096), default=224, help="scene width and height in pixels")
    p.add_argument("--people-max", type=_int_range(1, 10), default=3, help="most people in one scene")
    p.add_argument("--format", choices=("png", "jpeg"), default="png",
                   help="png (InfiniteForm's) or jpeg (what the GPU JPEG decoder reads)")
    p = synth.add_parser("sequences", help="rendered videos + a single-frame estimator's heatmaps")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--videos", type=_int_range(1), default=40)
    p.add_argument("--frames", type=_int_range(5), default=60)
    p.add_argument("--seed", type=_int_range(0), default=0)
    p.add_argument("--heatmap", type=_int_range(8, 256), default=64,
                   help="heatmap side in pixels (blazepose: 64, or 32 / 16 pooled from its 64)")
    p.add_argument("--estimator", choices=("blazepose", "simulated"), default="blazepose",
                   help="blazepose: render every frame and run BlazePose on it; simulated: a noise "
                        "model on the ground truth, no frames (fast, for tests)")
    p.add_argument("--frame-size", type=_size, default=(480, 360), metavar="WxH",
                   help="rendered frame size (default 480x360)")
    p.add_argument("--noise", type=_float_range(0), default=1.0,
                   help="simulated estimator's error level (1.0 = default, 0 = perfect estimator)")

    p = sub.add_parser("estimate", help="BlazePose on your own video: a sequence dataset without ground truth")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", type=Path, help="a video file (anything FFmpeg reads)")
    src.add_argument("--frames", type=Path, help="a folder of frame images (natural order)")
    p.add_argument("--out", type=Path, required=True, help="the dataset folder to write")
    p.add_argument("--fps", type=_float_range(0, above=True), default=None,
                   help="frame rate of a --frames folder (recorded only)")
    p.add_argument("--heatmap", type=int, choices=(64, 32, 16), default=64, help="heatmap side: 64 (BlazePose's), 32 or 16")
    p.add_argument("--allow-truncated", action="store_true",
                   help="a cut or damaged video: keep the frames before the damage (a warning, recorded "
                        "in index.json) instead of refusing it")

    p = sub.add_parser("refine", help="a finished temporal run refines every frame of a dataset")
    p.add_argument("--run", type=Path, required=True, help="the temporal run folder")
    p.add_argument("--data", type=Path, required=True, help="a sequence dataset folder (or .npz)")
    p.add_argument("--out", type=Path, default=None,
                   help="CSV to write (default <data>/refined-<run id>.csv; an .npz is written beside it)")

    train = sub.add_parser("train", help="train one model").add_subparsers(dest="what", required=True)
    grid = sub.add_parser("grid", help="train every variant").add_subparsers(dest="what", required=True)
    for group, is_grid in ((train, False), (grid, True)):
        p = group.add_parser("classifier")
        _add_common_train(p, is_grid)
        if is_grid:
            p.add_argument("--presets", default=None,
                           help="comma-separated preset names (default: the paper's seven)")
        else:
            p.add_argument("--preset", required=True)
        p.add_argument("--weights", default=None,
                       help="backbone: a weights file (.safetensors or a torch state dict), imagenet, "
                            "poselab, or random (default: ImageNet if cached, else the PoseLab backbone)")
        p.add_argument("--image-size", type=_int_range(32, 1024), default=224,
                       help="crop side fed to ResNet-50 (paper: 224)")
        p.add_argument("--keypoints", choices=("annotation", "estimated"), default="annotation",
                       help="keypoint presets' keypoints: the annotation's (the paper's setting) or "
                            "BlazePose's on each crop (what a deployed system has)")
        p.add_argument("--decoder", choices=("auto", "pil", "torchvision"), default="auto",
                       help="image cache decoder: auto = the GPU's JPEG decoder on CUDA when every "
                            "image is a JPEG, else PIL on every core")
        p = group.add_parser("temporal")
        _add_common_train(p, is_grid)
        if is_grid:
            p.add_argument("--archs", default=None,
                           help="comma-separated model names (default: every learned model and baseline; "
                                "python -m core archs lists them)")
        else:
            p.add_argument("--arch", required=True, help="a model name (python -m core archs lists them)")
        p.add_argument("--model", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                       help="model config field, e.g. --model hidden=32 --model interval=1 (repeatable)")
        p.add_argument("--init-from", type=Path, default=None,
                       help="fine-tune from this run's weights (grid: a run, or a folder of runs)")

    p = sub.add_parser("archs", help="list the temporal models and baselines")

    study = sub.add_parser("study", help="a study's whole protocol in one resumable command").add_subparsers(
        dest="what", required=True)
    p = study.add_parser("temporal", help="the thesis's protocol: pre-train on simulated-estimator sequences, "
                                          "fine-tune on BlazePose videos, Table 1/2 with intervals")
    p.add_argument("--out", type=Path, default=Path("data/study-temporal"),
                   help="work folder: datasets, runs and tables (default data/study-temporal); "
                        "running again resumes")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=_int_range(0), default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes (minutes): check the protocol end to end")

    p = sub.add_parser("bench", help="speed benchmark: image cache, features, grid, fine-tune, temporal, saliency")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--images", type=_int_range(1), default=200, help="synthetic scenes to render and measure on")
    p.add_argument("--out", type=Path, default=None,
                   help="result JSON (default: bench/results/bench-<device>-<date>.json)")

    p = sub.add_parser("pretrain", help="pretrain ResNet-50 on PoseLab's renders (the shipped backbone)")
    p.add_argument("--scenes", type=_int_range(1), default=48_000, help="rendered scenes (about 1.5 people each)")
    p.add_argument("--seed", type=_int_range(0), default=1_000_003, help="the renders' seed (no demo or test uses it)")
    p.add_argument("--image-size", type=_int_range(32, 1024), default=112,
                   help="crop side (the demo's classifiers use 112)")
    p.add_argument("--epochs", type=_int_range(1, 1000), default=3)
    p.add_argument("--task", choices=("pose+classes", "pose", "classes"), default="pose+classes",
                   help="pose: label-free 3D/2D pose targets; the others add (or use only) the pose classes")
    p.add_argument("--classes", choices=("pretrain", "demo"), default="pretrain",
                   help="pose-class family of the renders: pretrain (disjoint from the demo's 15; its class "
                        "head ships as the backbone's fc) or demo (the 15 themselves: the answer built in)")
    p.add_argument("--batch-size", type=_int_range(1, 65_536), default=64)
    p.add_argument("--lr", type=_float_range(0, above=True), default=1e-3)
    p.add_argument("--pixel-noise", type=_float_range(0, 1), default=0.2,
                   help="Gaussian pixel noise per crop, std up to this share of 0-255 (0 = off)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--workers", type=_int_range(1, 512), default=None, help="rendering processes (default: one per CPU)")
    p.add_argument("--out", type=Path, default=None,
                   help="weights file (default checkpoints/_poselab/resnet50-poselab.safetensors)")

    p = sub.add_parser("runs", help="list runs with their headline metric")
    p.add_argument("--runs", type=Path, default=None)
    p.add_argument("--clean", action="store_true",
                   help="remove the temp files and staging folders that killed processes left behind")
    return parser


def _size(s: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 480x360, not {s!r}") from None
    if not (32 <= w <= 4096 and 32 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"frame size {w}x{h} is outside 32..4096 pixels")
    return w, h


def _split(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


# One handler per command. Each imports what it needs when it runs: the library pulls in
# torch (seconds to import), and ``python -m core --help`` should answer at once.

def _demo(args, runs_dir: Path) -> None:
    from core.demo import build_demo
    build_demo(data_dir=args.data_dir, runs_dir=runs_dir, device=args.device)


def _synth_images(args, runs_dir: Path) -> None:
    from core.synthetic.images import ImageSpec, write_image_dataset
    write_image_dataset(args.out, ImageSpec(n_train=args.train, n_test=args.test, seed=args.seed, size=args.size,
                                            people_max=args.people_max, image_format=args.format))


def _synth_sequences(args, runs_dir: Path) -> None:
    from core.temporal.synth import SequenceSpec, write_sequence_dataset
    write_sequence_dataset(args.out, SequenceSpec(videos=args.videos, frames=args.frames, seed=args.seed,
                                                  heatmap=args.heatmap, noise=args.noise, estimator=args.estimator,
                                                  image_size=args.frame_size))


def _estimate(args, runs_dir: Path) -> None:
    from core.temporal.estimate import estimate_video_file
    estimate_video_file(out=args.out, video=args.video, frames=args.frames, fps=args.fps, heatmap=args.heatmap,
                        allow_truncated=args.allow_truncated)


def _refine(args, runs_dir: Path) -> None:
    from core.temporal.refine import refine_dataset
    refine_dataset(run=args.run, data=args.data, out=args.out)


def _seeds(args) -> tuple[int, ...]:
    return tuple(range(args.seed, args.seed + getattr(args, "seeds", 1)))


def _classifier(args, runs_dir: Path) -> None:
    from core.classification.model import PAPER_PRESETS
    from core.classification.train import ClassifierJob, TrainConfig, train_classifier, train_classifier_grid
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    recipe = TrainConfig(image_size=args.image_size, **{k: v for k, v in given.items() if v is not None})
    presets = (args.preset,) if args.command == "train" else tuple(_split(args.presets) or PAPER_PRESETS)
    job = ClassifierJob(data=args.data, runs_dir=runs_dir, presets=presets, seeds=_seeds(args), recipe=recipe,
                        weights=args.weights, keypoints=args.keypoints, device=args.device, decoder=args.decoder)
    if args.command == "train":
        train_classifier(job)
    else:
        train_classifier_grid(job)


def _temporal(args, runs_dir: Path) -> None:
    from core.errors import RunError
    from core.temporal.models import BASELINES, LEARNED, config_fields
    from core.temporal.train import ModelPlan, TemporalJob, default_recipe, train_temporal, train_temporal_grid
    archs = (args.arch,) if args.command == "train" else tuple(_split(args.archs) or LEARNED + BASELINES)
    model = {k: _number(v) for k, v in args.model}
    # a grid applies each --model setting to the models that have that field (one: all of it)
    fits = {a: {k: v for k, v in model.items() if len(archs) == 1 or k in config_fields(a)} for a in archs}
    unused = set(model) - {k for f in fits.values() for k in f}
    if unused:
        raise RunError(None, f"--model {', '.join(sorted(unused))}: no model of {', '.join(archs)} has that field")
    plans = tuple(ModelPlan(a, model=fits[a],
                            recipe=default_recipe(a, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr))
                  for a in archs)
    job = TemporalJob(data=args.data, runs_dir=runs_dir, plans=plans, seeds=_seeds(args), device=args.device,
                      init_from=args.init_from)
    if args.command == "train":
        train_temporal(job)
    else:
        train_temporal_grid(job)


def _number(text: str):
    """A --model value as the config field would hold it: int, float, bool or text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _study(args, runs_dir: Path) -> None:
    from core.temporal.study import StudyConfig, quick, run_study
    cfg = StudyConfig(out=args.out, device=args.device, seed=args.seed)
    result = run_study(quick(cfg) if args.quick else cfg)
    print(f"wrote {Path(result['config']['out']) / 'study.md'} in {result['seconds_this_call']:.0f} s")


def _archs(args, runs_dir: Path) -> None:
    from core.temporal.models import ARCHS
    for name, arch in ARCHS.items():
        print(f"{name:<16} {'baseline' if arch.baseline else 'learned ':<9} {arch.summary}")


def _bench(args, runs_dir: Path) -> None:
    from core.bench import run_bench
    run_bench(device=args.device, images=args.images, out=args.out)


def _pretrain(args, runs_dir: Path) -> None:
    from core.classification.pretrain import DEFAULT_OUT, PretrainConfig, PretrainJob, pretrain
    from core.classification.pretrain_data import DataConfig
    pretrain(PretrainJob(out=args.out or DEFAULT_OUT,
                         data=DataConfig(scenes=args.scenes, seed=args.seed, image_size=args.image_size,
                                         classes=args.classes),
                         train=PretrainConfig(task=args.task, epochs=args.epochs, batch_size=args.batch_size,
                                              lr=args.lr, pixel_noise=args.pixel_noise),
                         device=args.device, workers=args.workers,
                         command=("python", "-m", "core", *sys.argv[1:])))


def _runs(args, runs_dir: Path) -> None:
    from core.runs import list_runs
    runs = list_runs(runs_dir)
    if not runs:
        print(f"no runs in {runs_dir}")
    else:
        print(f"{'run':<56} {'kind':<10} {'status':<10} {'headline':<22} what")
    for r in runs:
        head = r.headline
        head_s = f"{head[0]}={head[1]:.4f}" if head and isinstance(head[1], (int, float)) else ""
        what = r.info.label if r.info else (r.problem or "")
        print(f"{r.id:<56} {r.kind or '?':<10} {r.status:<10} {head_s:<22} {what}")
    _by_variant(runs)
    _leftovers(runs_dir, runs, clean=args.clean)


def _by_variant(runs) -> None:
    """The finished runs grouped by everything but the seed: the headline's mean and its
    95 % interval (across seeds; with one seed, the test set's binomial interval)."""
    from core.runs import seed_groups
    from core.stats import estimate
    groups = seed_groups(runs)
    if not groups:
        return
    print(f"\n{'by variant (all but the seed)':<56} {'seeds':<6} {'headline':<16} mean [95 % interval]")
    for g in groups:
        r = g[0]
        key = r.metrics.get("headline")
        values = [x.metrics.get(key) for x in g]
        counted = r.metrics.get("num_test") or r.metrics.get("num_test_keypoints")
        e = estimate([v if isinstance(v, (int, float)) else float("nan") for v in values], counted=counted)
        label = " · ".join(p for p in r.info.label.split(" · ") if not p.startswith("seed "))
        print(f"{label:<56} {len(g):<6} {str(key):<16} {e.text(digits=4)}  ({e.method})")


def _leftovers(runs_dir: Path, runs, *, clean: bool) -> None:
    """Leftovers of killed processes in the runs folder and beside the runs' datasets."""
    from core.io import find_leftovers, remove_leftover
    data_roots = {Path(r.info.data.root) for r in runs if r.info is not None and r.info.data.root}
    found = find_leftovers(runs_dir) + [x for root in sorted(data_roots)
                                        for x in find_leftovers(root.parent, recursive=False)]
    if not found:
        return
    total = sum(x.size for x in found) / 1e6
    print(f"\n{len(found)} leftover(s) of killed processes ({total:.1f} MB)"
          + ("" if clean else "; python -m core runs --clean removes them") + ":")
    for x in found:
        action = ("put back: " if x.restores else "removed: ") if clean else ""
        line = f"  {action}{x.describe()}"          # described before it is gone
        if clean:
            remove_leftover(x)
        print(line)


HANDLERS = {("demo", None): _demo, ("synth", "images"): _synth_images, ("synth", "sequences"): _synth_sequences,
            ("train", "classifier"): _classifier, ("grid", "classifier"): _classifier,
            ("train", "temporal"): _temporal, ("grid", "temporal"): _temporal,
            ("bench", None): _bench, ("runs", None): _runs, ("estimate", None): _estimate,
            ("refine", None): _refine, ("pretrain", None): _pretrain, ("archs", None): _archs,
            ("study", "temporal"): _study}


def run_command(args: argparse.Namespace) -> int:
    from core.runs import default_runs_dir  # lazy: see above
    runs_dir = getattr(args, "runs", None) or default_runs_dir()
    HANDLERS[(args.command, getattr(args, "what", None))](args, runs_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:                  # a bad argument (exit 2, said in one line) or --help (0)
        return int(e.code or 0)
    try:
        return run_command(args)
    except PoseLabError as e:
        _end_progress_bars()
        print(f"error: {_one_clean_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _end_progress_bars()
        print("interrupted", file=sys.stderr)
        return 130


def _one_clean_line(text: str) -> str:
    """An error as one plain line: no terminal escape codes (a library's colours), no
    line breaks (a library's multi-line advice)."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", text)
    return " ".join(text.split())


def _end_progress_bars() -> None:
    """Close any tqdm bar still open, so the error starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")          # imported only if a command used it
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ()) or ()):
        bar.close()
