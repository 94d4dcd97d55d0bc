"""Why do seeds + regularized losses end below their seeds? Numbers from finished artefacts only.

No training: reads the image-level table's JSON and the dataset's train masks and reports
(1) the train split's class balance (pixel share, images tagged, mean area when present, stuff
vs objects), (2) every final run's per-class IoU as a share of full supervision's, averaged over
stuff and over object classes, and (3) the seed sweep's precision / coverage trade-off.

    python benchmarks/imagelevel_diagnosis.py --data data/synthetic-128-seed1 \
        --table benchmarks/results/imagelevel_table.json --out benchmarks/results/imagelevel_diagnosis.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from scribble_table import results_header

from wsdeploy.atomic import atomic_write_text
from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.data.synthetic import STUFF_CLASSES


def class_balance(data: str) -> dict:
    dataset = SegmentationDataset(data, split="train", labels="masks")
    k = len(dataset.classes)
    pixels = np.zeros(k)
    tagged = np.zeros(k, dtype=int)
    areas: list[list[float]] = [[] for _ in range(k)]
    for i in range(len(dataset)):
        item = dataset[i]
        mask = item["label"]
        counts = np.bincount(mask[mask < k].ravel(), minlength=k)[:k]
        pixels += counts
        for c in np.nonzero(counts)[0]:
            areas[c].append(counts[c] / mask.size)
        for t in item["tags"] or []:
            tagged[t] += 1
    share = pixels / pixels.sum()
    return {
        "images": len(dataset),
        "classes": {name: {"pixel_share": float(share[c]), "images_tagged": int(tagged[c]),
                           "mean_area_when_present": float(np.mean(areas[c])) if areas[c] else None,
                           "stuff": c in STUFF_CLASSES}
                    for c, name in enumerate(dataset.classes)},
        "stuff_pixel_share": float(sum(share[c] for c in STUFF_CLASSES)),
        "tags_per_image": float(tagged.sum() / len(dataset)),
    }


def ratios_to_full(table: dict, classes: list[str]) -> dict:
    runs = {r["name"]: r for r in table["runs"] if r.get("per_class_iou")}
    full = runs.get("full")
    if full is None:
        raise SystemExit("the table has no 'full' row with per-class IoU")

    def iou(run: dict, c: int, name: str) -> float:
        p = run["per_class_iou"]
        return p[name] if isinstance(p, dict) else p[c]

    out = {}
    for name, run in runs.items():
        if name == "full":
            continue
        per = {cls: iou(run, c, cls) / iou(full, c, cls) for c, cls in enumerate(classes)}
        stuff = [per[classes[c]] for c in STUFF_CLASSES]
        things = [v for c, (k, v) in enumerate(per.items()) if c not in STUFF_CLASSES]
        out[name] = {"miou": run["miou"], "per_class_share_of_full": per,
                     "stuff_mean_share": statistics.mean(stuff), "objects_mean_share": statistics.mean(things)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--table", default="benchmarks/results/imagelevel_table.json")
    parser.add_argument("--out", default="benchmarks/results/imagelevel_diagnosis.json")
    args = parser.parse_args()
    table = json.loads(Path(args.table).read_text())
    classes = table["dataset"]["classes"]
    sweep = [{k: r[k] for k in ("fg_threshold", "precision", "coverage", "miou_as_background", "miou_ignored")}
             for r in table["sweep"]["rows"]]
    result = {**results_header(data=args.data), "table": args.table, "class_balance": class_balance(args.data),
              "final_runs_vs_full": ratios_to_full(table, classes), "seed_sweep_train": sweep}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    bal = result["class_balance"]
    print(f"stuff classes hold {100 * bal['stuff_pixel_share']:.1f}% of train pixels; {bal['tags_per_image']:.2f} tags/image")
    for name, r in result["final_runs_vs_full"].items():
        print(f"{name:>34}: mIoU {100 * r['miou']:.1f}; share of full: stuff {100 * r['stuff_mean_share']:.0f}%, "
              f"objects {100 * r['objects_mean_share']:.0f}%")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
