"""`wsdeploy segment IMAGE... --model PATH --out DIR`: mask and overlay PNGs for each image."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from wsdeploy.data.index import IMAGE_SUFFIXES

__all__ = ["add_arguments", "collect_images", "describe_model", "run"]



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    parser.add_argument("--model", default=None, help="model file (.pt, .onnx, .pt2, .engine); default: the bundled model")
    parser.add_argument("--out", required=True, help="output folder for NAME_mask.png and NAME_overlay.png")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu' or 'cuda[:N]'")
    parser.add_argument("--crf", action="store_true", help="refine with the dense CRF (library defaults)")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1] (default 0.5)")
    parser.add_argument("--no-overlay", action="store_true", help="write only the mask PNGs")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="refuse images with more pixels, read from the header before decoding "
                        "(default 8192*8192 = 67108864)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first image that cannot be read (default: skip it, say why, "
                        "segment the rest and exit with code 1)")


def describe_model(card: dict, *, bundled: bool) -> str:
    """One line naming the model's classes, and what it was made for when its card says so
    (the bundled model's card does: street scenes, and what to do for other photos)."""
    name = "the bundled model" if bundled else "the model"
    text = f"{name} knows {len(card['classes'])} classes: {', '.join(card['classes'])}"
    domain = card.get("training", {}).get("domain")
    return f"{text}; made for {domain}" if domain else text


def collect_images(inputs: list[str]) -> list[Path]:
    """Expand folders into their image files (sorted); refuse missing paths and name clashes."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            paths.append(p)
        else:
            raise ValueError(f"no such image file or folder: {item!r}")
    if not paths:
        raise ValueError(f"no images found in {inputs} (looked for {', '.join(IMAGE_SUFFIXES)})")
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            raise ValueError(f"two inputs would write the same outputs: {stems[p.stem]} and {p}")
        stems[p.stem] = p
    return paths


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import wsdeploy
    from wsdeploy.data.image_io import read_image, write_image, write_label_png
    from wsdeploy.runtime import DEFAULT_MODEL_PATH

    paths = collect_images(args.images)
    limits = {} if args.max_pixels is None else {"max_pixels": args.max_pixels}
    model = wsdeploy.load(args.model or DEFAULT_MODEL_PATH, device=args.device, crf=args.crf, **limits)
    print(describe_model(model.card, bundled=args.model is None))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = []
    skipped: dict[str, str] = {}
    for path in tqdm(paths, desc="segment", unit="img", disable=len(paths) < 2):
        try:
            image = read_image(path, max_pixels=model.max_pixels)
        except ValueError as exc:  # corrupt, truncated, not an image, too large
            if args.strict or len(paths) == 1:
                raise
            skipped[str(path)] = str(exc)
            tqdm.write(f"wsdeploy segment: skipped {path}: {exc}", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        seg = model.segment(image)
        latency = time.perf_counter() - t0
        write_label_png(out / f"{path.stem}_mask.png", seg.labels)
        if not args.no_overlay:
            write_image(out / f"{path.stem}_overlay.png", seg.overlay(image, alpha=args.alpha))  # with a legend
        summary.append({"image": str(path), "latency_s": round(latency, 4), "pixels": seg.class_pixel_counts()})
    for row in summary:
        print(json.dumps(row))
    written = len(paths) - len(skipped)
    line = f"wrote {written} mask(s){'' if args.no_overlay else ' and overlay(s)'} to {out}"
    if skipped:
        line += f"; skipped {len(skipped)} image(s) that could not be read: {', '.join(map(repr, skipped))}"
    print(line)
    return 1 if skipped else 0
