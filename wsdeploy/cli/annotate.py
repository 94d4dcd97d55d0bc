"""`wsdeploy annotate`: scribbles -> dense masks, for one image or a whole dataset folder.

    wsdeploy annotate photo.jpg --scribbles photo_scribbles.png --out photo_mask.png [--overlay o.png]
    wsdeploy annotate data/mine [--split train] [--out-dir data/mine/masks] [--overwrite]

The second form reads a dataset in the folder layout (`images/`, `scribbles/`, `classes.txt`,
`splits/`) and writes one mask PNG per scribbled image into `masks/` (or `--out-dir`), so the
dense pseudo-masks feed `wsdeploy train --supervision full`. Existing masks are never
overwritten unless `--overwrite` is given. Every file is written atomically.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

__all__ = ["add_arguments", "run"]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="IMAGE|DATASET", help="an image file, or a dataset folder (folder layout)")
    one = parser.add_argument_group("one image")
    one.add_argument("--scribbles", default=None, help="PNG of class indices on the scribbles, 255 elsewhere")
    one.add_argument("--out", default=None, help="where to write the mask PNG (class indices)")
    one.add_argument("--overlay", default=None, help="also write the mask blended over the image here")
    one.add_argument("--num-classes", type=int, default=None,
                     help="number of classes K (default: largest scribbled class + 1; datasets: classes.txt)")
    many = parser.add_argument_group("dataset folder")
    many.add_argument("--split", default=None, help="annotate only this split (default: every image with scribbles)")
    many.add_argument("--out-dir", default=None, help="folder for the masks (default: DATASET/masks)")
    many.add_argument("--overwrite", action="store_true", help="replace masks that already exist")
    method = parser.add_argument_group("method (defaults: wsdeploy.training.AnnotateConfig)")
    method.add_argument("--method", choices=("graphcut", "network"), default=None,
                        help="graphcut (default: iterated colour-model graph cut with a geodesic prior) "
                             "or network (the per-image network, the previous default)")
    from wsdeploy.training.annotate.config import AnnotateConfig

    default = AnnotateConfig()
    method.add_argument("--steps", type=int, default=None,
                        help=f"network: optimisation steps per image (default: {default.steps})")
    method.add_argument("--size", type=int, default=None,
                        help=f"network: working resolution, long side in pixels (default: {default.size})")
    method.add_argument("--crf-iterations", type=int, default=None,
                        help=f"network: dense-CRF iterations at full resolution, 0 = off (default: {default.crf_iterations})")
    method.add_argument("--device", default="cpu", help="'cpu' (default), 'cuda[:N]' or 'auto'")
    method.add_argument("--seed", type=int, default=0, help="network initialisation seed (default 0; the graph cut is deterministic)")


def _config(args: argparse.Namespace):
    from wsdeploy.training.annotate.config import AnnotateConfig

    chosen = {"method": args.method, "steps": args.steps, "size": args.size, "crf_iterations": args.crf_iterations}
    if args.method != "network" and any(v is not None for k, v in chosen.items() if k != "method"):
        raise ValueError("--steps, --size and --crf-iterations set the network; add --method network")
    return AnnotateConfig(**{k: v for k, v in chosen.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.is_dir():
        return _run_folder(args, path)
    if not path.is_file():
        raise ValueError(f"no such image file or dataset folder: {args.path!r}")
    for flag in ("split", "out_dir"):
        if getattr(args, flag) is not None:
            raise ValueError(f"--{flag.replace('_', '-')} applies to a dataset folder, not to one image")
    if args.scribbles is None or args.out is None:
        raise ValueError("one image needs --scribbles PNG and --out MASK.png")
    return _run_one(args, path)


def _run_one(args: argparse.Namespace, path: Path) -> int:
    from wsdeploy.data.image_io import (
        read_image,
        read_label_png,
        write_image,
        write_label_png,
    )
    from wsdeploy.training.annotate.image import annotate
    from wsdeploy.visualize import default_palette, overlay

    image = read_image(path)
    result = annotate(image, read_label_png(args.scribbles), num_classes=args.num_classes,
                      config=_config(args), device=args.device, seed=args.seed)
    write_label_png(args.out, result.labels)
    if args.overlay:
        palette = default_palette(result.probs.shape[0])
        write_image(args.overlay, overlay(image, result.labels, palette, alpha=0.5))
    print(json.dumps({"image": str(path), "mask": args.out, "seconds": round(result.seconds, 3),
                      "classes": result.probs.shape[0]}))
    return 0


def _run_folder(args: argparse.Namespace, root: Path) -> int:
    from tqdm import tqdm

    from wsdeploy.data.folder_layout import index_folder
    from wsdeploy.data.image_io import read_label_png, write_label_png
    from wsdeploy.training.annotate.image import annotate

    for flag in ("scribbles", "out", "overlay"):
        if getattr(args, flag) is not None:
            raise ValueError(f"--{flag} applies to one image; a dataset folder writes into --out-dir")
    index = index_folder(root, split=args.split)
    num_classes = args.num_classes if args.num_classes is not None else len(index.classes)
    samples = [s for s in index.samples if s.scribble is not None]
    if not samples:
        raise ValueError(f"no image of {root} (split {args.split!r}) has a scribble PNG in scribbles/")
    out_dir = Path(args.out_dir) if args.out_dir else root / "masks"
    existing = [s.id for s in samples if (out_dir / f"{s.id}.png").exists()]
    if existing and not args.overwrite:
        shown = ", ".join(existing[:5]) + (", ..." if len(existing) > 5 else "")
        raise ValueError(
            f"{len(existing)} mask(s) already exist in {out_dir} ({shown}); pass --overwrite to "
            f"replace them or --out-dir to write elsewhere"
        )
    config = _config(args)
    skipped: dict[str, str] = {}
    seconds = 0.0
    for sample in tqdm(samples, desc="annotate", unit="img"):
        try:
            result = annotate(sample.image, read_label_png(sample.scribble), num_classes=num_classes,
                              config=config, device=args.device, seed=args.seed)
        except ValueError as exc:  # one bad scribble file must not stop a long run
            skipped[sample.id] = str(exc)
            logger.warning("skipped %s: %s", sample.id, exc)
            continue
        write_label_png(out_dir / f"{sample.id}.png", result.labels)
        seconds += result.seconds
        del result  # its graph-cut state keeps the max-flow graphs (~330 B/pixel): free them before the next photo
    written = len(samples) - len(skipped)
    print(json.dumps({"dataset": str(root), "split": args.split, "out_dir": str(out_dir), "written": written,
                      "skipped": skipped, "without_scribbles": len(index.samples) - len(samples),
                      "mean_seconds": round(seconds / max(written, 1), 3)}))
    print(f"wrote {written} mask(s) to {out_dir}" + (f"; skipped {len(skipped)} (see above)" if skipped else ""))
    return 1 if skipped else 0
