"""`wsdeploy eval MODEL --data DIR [--split val] [--out DIR]`: mIoU, per-class IoU, confusion matrix.

Scores any file `wsdeploy.load` reads with the runtime's own pre- and post-processing
(`wsdeploy.evaluation.evaluate`). Writes `eval.json` (metrics, per-class IoU, the confusion
matrix, machine, versions, command) and `confusion.png` (row-normalised) into --out.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]

_EPILOG = """\
examples:
  wsdeploy eval runs/crf/model.pt --data data/synthetic --split val --out eval/crf
  wsdeploy eval runs/crf/model.pt --data data/synthetic --crf --out eval/crf_dense   # with the dense CRF
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("model", metavar="MODEL", help="model file (.pt, .onnx, .pt2, .engine)")
    parser.add_argument("--data", required=True, help="dataset folder with masks/ (folder layout or VOC2012)")
    parser.add_argument("--split", default="val", help="split to score (default: val); 'all' for every image")
    parser.add_argument("--out", default=None, help="folder for eval.json and confusion.png (default: eval_<MODEL stem>)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu' or 'cuda[:N]'")
    parser.add_argument("--crf", action="store_true", help="refine with the dense CRF, as segment --crf")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N images")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from wsdeploy.atomic import atomic_write_text
    from wsdeploy.data.image_io import write_image
    from wsdeploy.environment import library_versions, machine_info
    from wsdeploy.evaluation import confusion_image, evaluate

    if not Path(args.model).is_file():
        raise ValueError(f"model file not found: {args.model!r}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    split = None if args.split == "all" else args.split
    bar = tqdm(desc="eval", unit="img", leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = evaluate(args.model, args.data, split=split, device=args.device, crf=args.crf, limit=args.limit,
                          progress=progress)
    finally:
        bar.close()
    out = Path(args.out) if args.out else Path(f"eval_{Path(args.model).stem}")
    report = {"model": str(args.model), "data": str(args.data), "split": args.split, "crf": args.crf,
              **result.to_dict(), "command": shlex.join(["wsdeploy", *sys.argv[1:]]),
              "machine": machine_info(), "versions": library_versions(())}
    atomic_write_text(out / "eval.json", json.dumps(report, indent=1) + "\n")
    write_image(out / "confusion.png", confusion_image(result.confusion, result.classes))
    width = max(len(c) for c in result.classes)
    for name, iou in result.per_class_iou.items():
        print(f"  {name:<{width}}  {'   -' if iou is None else f'{100 * iou:5.1f}'}")
    print(f"mIoU {100 * result.miou:.1f}  pixel accuracy {100 * result.pixel_accuracy:.1f}  "
          f"({result.images} {args.split!r} images of {args.data}, {result.seconds:.1f} s)")
    print(f"wrote {out / 'eval.json'} and {out / 'confusion.png'}")
    return 0
