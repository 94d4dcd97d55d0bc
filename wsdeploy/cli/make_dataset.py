"""`wsdeploy make-dataset`: generate the synthetic weak-supervision benchmark.

Writes images, dense masks, simulated scribbles, image-level tags, classes, splits and a
`dataset.json` manifest (written last, so a folder without it is an interrupted run). See
`wsdeploy.data.synthetic` for the layout and the scene recipe.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from wsdeploy.data.synthetic.config import SyntheticConfig

    default = SyntheticConfig()
    parser.add_argument("out", help="output folder (created; must be empty unless --overwrite)")
    parser.add_argument("--num-images", type=int, default=1000, help="images in total (default: 1000)")
    parser.add_argument("--size", type=int, default=default.size, help=f"image side in pixels (default: {default.size})")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default: 0)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of images in splits/val.txt, the last ids (default: 0.2)")
    parser.add_argument("--scribble-width", type=int, default=default.scribble_width,
                        help=f"scribble stroke thickness in pixels (default: {default.scribble_width})")
    parser.add_argument("--scribble-coverage", type=float, default=default.scribble_coverage,
                        help=f"target fraction of each region's pixels that is scribbled (default: {default.scribble_coverage})")
    parser.add_argument("--image-format", choices=("png", "jpg"), default="png",
                        help="png: lossless, reproducible bytes (default); jpg: quality 95, ~4x smaller")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per available CPU, at most 8; 0 = none)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a previous dataset in the output folder (its other files are kept)")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from wsdeploy.data.synthetic import generate_dataset

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"wsdeploy make-dataset: error: {out} exists and is not a folder", file=sys.stderr)
        return 2
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        print(f"wsdeploy make-dataset: error: {out} is not empty; choose another folder or pass "
              "--overwrite to replace the dataset in it", file=sys.stderr)
        return 2
    command = "wsdeploy make-dataset " + " ".join(shlex.quote(a) for a in _argv(args))
    bar = tqdm(total=args.num_images, unit="img", disable=args.no_progress, desc="make-dataset")

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    start = time.perf_counter()
    try:
        generate_dataset(
            out,
            num_images=args.num_images,
            seed=args.seed,
            val_fraction=args.val_fraction,
            size=args.size,
            scribble_width=args.scribble_width,
            scribble_coverage=args.scribble_coverage,
            image_format=args.image_format,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=progress,
            command=command,
        )
    finally:
        bar.close()
    print(f"wrote {args.num_images} images to {out} in {time.perf_counter() - start:.1f}s")
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    """The options that shaped the data, in a canonical order (for the manifest)."""
    argv = [str(args.out), "--num-images", str(args.num_images), "--size", str(args.size), "--seed", str(args.seed),
            "--val-fraction", str(args.val_fraction), "--scribble-width", str(args.scribble_width),
            "--scribble-coverage", str(args.scribble_coverage), "--image-format", args.image_format]
    return argv
