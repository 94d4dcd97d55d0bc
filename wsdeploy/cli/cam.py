"""`wsdeploy cam`: CAMs of a tags-trained classifier, their random walk, a threshold sweep, seed PNGs.

    wsdeploy train --data data/synthetic --supervision tags --model classifier_resnet18 --out-dir runs/cls
    wsdeploy cam --model runs/cls/model.pt --data data/synthetic --out runs/cams     # CAM files
    wsdeploy cam --cams runs/cams --data data/synthetic --sweep                      # pick thresholds
    wsdeploy cam --cams runs/cams --data data/synthetic --seeds-out runs/seeds       # seeds at the pick
    wsdeploy cam --cams runs/cams --data data/synthetic --propagate runs/affinity/model.pt \\
        --propagate-out runs/rw --sweep --seeds-out runs/pseudo                    # random walk
    wsdeploy train --data data/synthetic --supervision tags --method seeds-rloss --seeds runs/seeds

The steps combine in one call (CAMs, then the random walk, then the sweep, then seeds with the
swept thresholds when no --fg-threshold is given). With --propagate the CAMs are walked over the
affinities of an affinity checkpoint and written to --propagate-out in the CAM file format; the
sweep and --seeds-out then read the propagated CAMs, so the pseudo-masks have the seeds' file
conventions (PNG of dataset class indices, 255 = unlabelled). Everything reads one split (--split, default train): the sweep
scores seeds against that split's masks only. Files are written atomically; `cams.json` is
written after the last CAM file, so a folder without it is an interrupted run.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run"]

logger = logging.getLogger(__name__)

_PICK_KEYS = ("miou_as_background", "miou_ignored", "precision")
_DEFAULT_FG = "0.1,0.15,0.2,0.25,0.3,0.35,0.4,0.45,0.5,0.55,0.6"
_EPILOG = """\
examples:
  wsdeploy train --data data/synthetic --supervision tags --model classifier_resnet18 --width 16 \\
      --output-stride 8 --out-dir runs/cls                        # the CAM classifier, from tags.txt
  wsdeploy cam --model runs/cls/model.pt --data data/synthetic --out runs/cams
  wsdeploy cam --cams runs/cams --data data/synthetic --sweep      # writes runs/cams/sweep_train.json
  wsdeploy cam --cams runs/cams --data data/synthetic --seeds-out runs/seeds      # at the sweep's pick
  wsdeploy cam --cams runs/cams --data data/synthetic --seeds-out runs/seeds_crf --fg-threshold 0.3 --crf
  wsdeploy train --data data/synthetic --supervision tags --method affinity --affinity-classifier \\
      runs/cls/model.pt --seeds runs/seeds_crf --affinity-background sky,grass,sand,water \\
      --crop-size 128 --out-dir runs/affinity                    # the affinity net for the walk
  wsdeploy cam --cams runs/cams --data data/synthetic --propagate runs/affinity/model.pt \\
      --propagate-out runs/rw --beta 8 --steps 256 --sweep --seeds-out runs/pseudo
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    src = parser.add_argument_group("CAMs (from a classifier checkpoint, or already written)")
    src.add_argument("--model", metavar="CKPT", default=None, help="classifier_* checkpoint trained with --supervision tags")
    src.add_argument("--cams", metavar="CAM_DIR", default=None, help="reuse the CAMs already written in this folder instead of --model")
    src.add_argument("--data", metavar="DIR", required=True, help="the dataset folder (folder layout or PASCAL VOC2012)")
    src.add_argument("--split", default="train", help="the split to read (default: train)")
    src.add_argument("--out", metavar="CAM_DIR", default=None, help="with --model: folder for the CAM files (<id>.npz) and cams.json")
    src.add_argument("--scales", default="0.5,1,1.5,2", help="comma-separated resize factors (default: 0.5,1,1.5,2)")
    src.add_argument("--no-flip", action="store_true", help="do not add the horizontally flipped image's CAMs")
    src.add_argument("--batch-size", type=int, default=8, help="images per forward pass, same-size images batched (default: 8)")
    src.add_argument("--device", default="auto", help="'auto' (CUDA if available, default), 'cpu' or 'cuda[:N]'")
    src.add_argument("--workers", type=int, default=0, help="image-decoding processes (default: 0, in this process)")
    walk = parser.add_argument_group("random walk (AffinityNet / IRN propagation of the CAMs)")
    walk.add_argument("--propagate", metavar="AFFINITY_CKPT", default=None, help="affinity checkpoint (`wsdeploy train --method affinity`): walk the CAMs over its affinities")
    walk.add_argument("--propagate-out", metavar="RW_DIR", default=None, help="folder for the propagated CAMs (CAM file format); the sweep and seeds then read it")
    walk.add_argument("--beta", type=float, default=8.0, help="affinity exponent of the transition matrix (default: 8, PSA's)")
    walk.add_argument("--steps", type=int, default=256, help="random-walk steps t (default: 256 = 2^8, PSA's and IRN's)")
    sweep = parser.add_argument_group("threshold sweep (needs masks on --split)")
    sweep.add_argument("--sweep", action="store_true", help="score seeds for every threshold against the split's masks; pick by --pick-by (default: seed mIoU, unseeded = background)")
    sweep.add_argument("--sweep-json", metavar="PATH", default=None, help="where to write the sweep (default: CAM_DIR/sweep_<split>.json)")
    sweep.add_argument("--fg-thresholds", default=_DEFAULT_FG, help=f"foreground thresholds to try (default: {_DEFAULT_FG})")
    sweep.add_argument("--pick-by", default="miou_as_background", choices=_PICK_KEYS,
                       help="the sweep's pick: seed mIoU with unseeded pixels as background / wrong (default), "
                       "seed mIoU with them left out, or seed precision")
    sweep.add_argument("--min-coverage", type=float, default=0.0,
                       help="pick only among settings whose seeds cover at least this share of labelled pixels (default: 0)")
    sweep.add_argument("--bg-thresholds", default=None, help="background thresholds to try, datasets with a background class only (default: equal to fg, no ignore band)")
    seeds = parser.add_argument_group("seeds (PNG per image: dataset class indices, 255 = unlabelled; read by `wsdeploy train --seeds`)")
    seeds.add_argument("--seeds-out", metavar="SEED_DIR", default=None, help="write <SEED_DIR>/<id>.png for every image of the split")
    seeds.add_argument("--fg-threshold", type=float, default=None, help="foreground seeds where the max CAM >= T (default: the pick of --sweep, or of an earlier sweep's CAM_DIR/sweep_<split>.json)")
    seeds.add_argument("--bg-threshold", type=float, default=None, help="background seeds where the max CAM <= T (background class only; default: the sweep's pick, else none)")
    seeds.add_argument("--crf", action="store_true", help="keep only seeds a dense CRF agrees with (IRN-style)")
    seeds.add_argument("--crf-iterations", type=int, default=10, help="mean-field iterations of --crf (default: 10)")


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{flag} must be comma-separated finite numbers, got {text!r}")
    return values


def _check_args(args: argparse.Namespace) -> None:
    if (args.model is None) == (args.cams is None):
        raise ValueError("give exactly one of --model CKPT (compute CAMs) or --cams CAM_DIR (reuse them)")
    if args.model is not None and args.out is None:
        raise ValueError("--model needs --out CAM_DIR, the folder to write the CAMs into")
    if args.cams is not None and args.out is not None:
        raise ValueError("--out is for --model; with --cams the CAMs are read from CAM_DIR")
    if (args.propagate is None) != (args.propagate_out is None):
        raise ValueError("--propagate AFFINITY_CKPT and --propagate-out RW_DIR go together")
    if args.cams is not None and not (args.sweep or args.seeds_out or args.propagate):
        raise ValueError("--cams: nothing to do; add --propagate, --sweep and/or --seeds-out SEED_DIR")
    if args.propagate is not None and (args.steps < 0 or not (math.isfinite(args.beta) and args.beta > 0)):
        raise ValueError(f"--beta must be > 0 and --steps >= 0, got {args.beta} and {args.steps}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    if args.seeds_out is None:
        for flag in ("fg_threshold", "bg_threshold"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} applies to --seeds-out")
        if args.crf:
            raise ValueError("--crf applies to --seeds-out")
    elif args.fg_threshold is None and not args.sweep and _previous_sweep(args) is None:
        where = f" (no {Path(args.cams) / _sweep_name(args)} yet)" if args.cams else ""
        raise ValueError(f"--seeds-out needs --fg-threshold T, --sweep to pick it, or --cams CAM_DIR of an "
                         f"earlier --sweep{where}")
    if args.sweep_json is not None and not args.sweep and args.seeds_out is None:
        raise ValueError("--sweep-json applies to --sweep (or, with --seeds-out, names an earlier sweep to read)")


def _sweep_name(args: argparse.Namespace) -> str:
    return f"sweep_{args.split}.json"


def _previous_sweep(args: argparse.Namespace) -> Path | None:
    """The sweep JSON an earlier `wsdeploy cam --cams CAM_DIR --sweep` wrote for this split, if any."""
    candidates = [Path(args.sweep_json)] if args.sweep_json else []
    if args.cams is not None:
        candidates.append(Path(args.cams) / _sweep_name(args))
    return next((p for p in candidates if p.is_file()), None)


def run(args: argparse.Namespace) -> int:
    from wsdeploy.data.datasets import SegmentationDataset
    from wsdeploy.training.tags.targets import dataset_background_index

    _check_args(args)
    scales = _floats(args.scales, "--scales")
    if any(s <= 0 for s in scales):
        raise ValueError(f"--scales must be positive, got {args.scales!r}")
    images = SegmentationDataset(args.data, split=args.split, labels=None)
    bg = dataset_background_index(images)
    if bg is None and args.bg_threshold is not None:
        raise ValueError(f"--bg-threshold given but {args.data} has no background class (classes: {images.classes})")
    cam_dir = Path(args.cams) if args.cams is not None else _write_cams(args, images, scales)
    if args.propagate is not None:
        cam_dir = _write_propagated(args, images, cam_dir)
    best: dict[str, Any] | None = None
    if args.sweep:
        best = _sweep(args, cam_dir, bg)
    if args.seeds_out is not None:
        if best is None and args.fg_threshold is None:  # the pick of an earlier `--sweep` on this split
            path = _previous_sweep(args)
            best = json.loads(path.read_text(encoding="utf-8"))["best"]
            print(f"thresholds from {path}: fg {best['fg_threshold']}, bg {best['bg_threshold']}")
        fg = args.fg_threshold if args.fg_threshold is not None else best["fg_threshold"]
        bg_thr = args.bg_threshold if args.fg_threshold is not None or args.bg_threshold is not None else best["bg_threshold"]
        _write_seeds(args, images, cam_dir, fg, bg_thr)
    return 0


def _write_cams(args: argparse.Namespace, dataset: Any, scales: list[float]) -> Path:
    from tqdm import tqdm

    from wsdeploy.checkpoint import load_checkpoint
    from wsdeploy.training.tags.cam import (
        CAM_MANIFEST,
        compute_cams,
        write_cam,
        write_cam_manifest,
    )
    from wsdeploy.training.tags.targets import dataset_background_index

    model, card = load_checkpoint(args.model)
    if not card.arch.startswith("classifier_"):
        raise ValueError(f"{args.model} is a {card.arch!r} model; CAMs need a classifier_* checkpoint (trained with --supervision tags)")
    if card.supervision != "tags":
        logger.warning("%s was trained with supervision %r, not 'tags'", args.model, card.supervision)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CAM_MANIFEST).unlink(missing_ok=True)  # until the new set is complete
    with tqdm(total=len(dataset), desc="cam", unit="img") as bar:
        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        for image_id, cams, classes in compute_cams(
            model, card, dataset, batch_size=args.batch_size, scales=scales, flip=not args.no_flip,
            device=args.device, num_workers=args.workers, progress=progress,
        ):
            write_cam(out / f"{image_id}.npz", cams, classes)
    write_cam_manifest(out, {
        "checkpoint": str(Path(args.model).resolve()), "arch": card.arch, "card_classes": list(card.classes),
        "scales": scales, "flip": not args.no_flip, "dataset": str(Path(args.data).resolve()),
        "split": args.split, "classes": list(dataset.classes), "background_index": dataset_background_index(dataset),
        "images": len(dataset), "command": _command(),
    })
    print(f"wrote {len(dataset)} CAM file(s) to {out}")
    return out


def _write_propagated(args: argparse.Namespace, dataset: Any, cam_dir: Path) -> Path:
    from tqdm import tqdm

    from wsdeploy.training.tags.affinity import load_affinity_checkpoint
    from wsdeploy.training.tags.cam import CAM_MANIFEST, read_cam_manifest, write_cam, write_cam_manifest
    from wsdeploy.training.tags.propagate import propagate_dataset

    source = read_cam_manifest(cam_dir)
    net, card = load_affinity_checkpoint(args.propagate)
    out = Path(args.propagate_out)
    if out.resolve() == cam_dir.resolve():
        raise ValueError(f"--propagate-out must not be the CAM folder itself ({cam_dir})")
    out.mkdir(parents=True, exist_ok=True)
    (out / CAM_MANIFEST).unlink(missing_ok=True)  # until the new set is complete
    with tqdm(total=len(dataset), desc="walk", unit="img") as bar:
        for image_id, cams, classes in propagate_dataset(
            net, card, dataset, cam_dir, beta=args.beta, steps=args.steps, batch_size=args.batch_size,
            device=args.device, progress=lambda done, total: bar.update(done - bar.n),
        ):
            write_cam(out / f"{image_id}.npz", cams, classes)
    write_cam_manifest(out, {
        **{k: v for k, v in source.items() if k not in ("versions", "command")},
        "source_cams": str(cam_dir.resolve()), "source_command": source.get("command"),
        "propagation": {"affinity": str(Path(args.propagate).resolve()), "beta": args.beta, "steps": args.steps,
                        "radius": net.radius, "stride": net.stride},
        "images": len(dataset), "split": args.split, "command": _command(),
    })
    print(f"wrote {len(dataset)} propagated CAM file(s) to {out} (beta {args.beta}, {args.steps} steps)")
    return out


def _sweep(args: argparse.Namespace, cam_dir: Path, bg: int | None) -> dict[str, Any]:
    from tqdm import tqdm

    from wsdeploy.atomic import atomic_write_text
    from wsdeploy.data.datasets import SegmentationDataset
    from wsdeploy.training.tags.seeds import pick_threshold, sweep_thresholds

    masks = SegmentationDataset(args.data, split=args.split, labels="masks")
    fgs = _floats(args.fg_thresholds, "--fg-thresholds")
    bgs = None if args.bg_thresholds is None else _floats(args.bg_thresholds, "--bg-thresholds")
    with tqdm(total=len(masks), desc="sweep", unit="img") as bar:
        rows = sweep_thresholds(cam_dir, masks, fg_thresholds=fgs, bg_thresholds=bgs,
                                progress=lambda done, total: bar.update(done - bar.n))
    key = args.pick_by
    if not 0.0 <= args.min_coverage <= 1.0:
        raise ValueError(f"--min-coverage must be in [0, 1], got {args.min_coverage}")
    eligible = [r for r in rows if (r["coverage"] or 0.0) >= args.min_coverage]
    if not eligible:
        raise ValueError(f"no threshold gives seeds covering >= {args.min_coverage} of the labelled pixels; "
                         f"the largest coverage is {max((r['coverage'] or 0.0) for r in rows):.3f}")
    best = pick_threshold(eligible, key=key)
    _print_table(rows, best)
    path = Path(args.sweep_json) if args.sweep_json else cam_dir / f"sweep_{args.split}.json"
    report = {"cams": str(cam_dir), "dataset": str(args.data), "split": args.split, "background_index": bg,
              "picked_by": key, "min_coverage": args.min_coverage, "best": best, "rows": rows, "command": _command()}
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    print(f"best on split {args.split!r}: fg {best['fg_threshold']}, bg {best['bg_threshold']} "
          f"({key} {_fmt(best[key])}); wrote {path}")
    return best


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _print_table(rows: list[dict[str, Any]], best: dict[str, Any]) -> None:
    print(f"{'fg':>6} {'bg':>6} {'mIoU(b)':>8} {'mIoU(a)':>8} {'prec':>6} {'cover':>6} {'CAM mIoU':>9}")
    for r in rows:
        bg = "-" if r["bg_threshold"] is None else f"{r['bg_threshold']:.3g}"
        mark = "  <- best" if r is best else ""
        print(f"{r['fg_threshold']:>6.3g} {bg:>6} {_fmt(r['miou_as_background']):>8} {_fmt(r['miou_ignored']):>8} "
              f"{_fmt(r['precision']):>6} {_fmt(r['coverage']):>6} {_fmt(r['cam_miou']):>9}{mark}")
    print("mIoU(b): unseeded pixels as background (or wrong); mIoU(a): unseeded pixels left out; percent")


def _write_seeds(args: argparse.Namespace, dataset: Any, cam_dir: Path, fg: float, bg_thr: float | None) -> None:
    from tqdm import tqdm

    from wsdeploy.atomic import atomic_write_text
    from wsdeploy.backends.torch_backend import resolve_device
    from wsdeploy.crf import CRFParams
    from wsdeploy.data.image_io import write_label_png
    from wsdeploy.training.tags.cam import cam_lookup
    from wsdeploy.training.tags.targets import dataset_background_index
    from wsdeploy.training.tags.seeds import make_seeds, refine_seeds_crf

    bg = dataset_background_index(dataset)
    k = len(dataset.classes)
    lookup = cam_lookup(cam_dir, dataset)
    crf = CRFParams(iterations=args.crf_iterations) if args.crf else None
    device = resolve_device(args.device) if args.crf else None
    out = Path(args.seeds_out)
    counts = {"seeded": 0, "pixels": 0}
    for i in tqdm(range(len(dataset)), desc="seeds", unit="img"):
        item = dataset[i]
        cams, classes = lookup(item["id"])
        if cams.shape[1:] != item["image"].shape[:2]:
            raise ValueError(f"image {item['id']!r}: CAMs are {cams.shape[1:]} but the image is {item['image'].shape[:2]}")
        thresholds = {"num_classes": k, "background_index": bg, "fg_threshold": fg, "bg_threshold": bg_thr}
        if crf is not None:
            seeds = refine_seeds_crf(item["image"], cams, classes, crf=crf, device=device, **thresholds)
        else:
            seeds = make_seeds(cams, classes, **thresholds)
        write_label_png(out / f"{item['id']}.png", seeds)
        counts["seeded"] += int((seeds != 255).sum())
        counts["pixels"] += seeds.size
    atomic_write_text(out / "seeds.json", json.dumps({
        "cams": str(cam_dir), "dataset": str(args.data), "split": args.split, "classes": list(dataset.classes),
        "background_index": bg, "fg_threshold": fg, "bg_threshold": bg_thr,
        "crf": None if crf is None else crf.as_dict(), "images": len(dataset),
        "seeded_fraction": counts["seeded"] / max(counts["pixels"], 1), "command": _command(),
    }, indent=2) + "\n")
    print(f"wrote {len(dataset)} seed PNG(s) to {out} (fg {fg}, bg {bg_thr}, crf {'on' if crf else 'off'}; "
          f"{100 * counts['seeded'] / max(counts['pixels'], 1):.1f}% of pixels seeded)")


def _command() -> str:
    return " ".join(shlex.quote(a) for a in ["wsdeploy", *sys.argv[1:]])
