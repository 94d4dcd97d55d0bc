"""Can a tags-trained segmenter tell which classes are present by itself? (issue 14, item 5)

Restricted to each image's true tags, the image-level table's segmenters score 8-9 points
higher (benchmarks/results/imagelevel_diagnosis.json): what they lose is class presence, and the
CAM classifier (val tag F1 0.67) is too weak to gate with. This measures the cheapest
deployable fix, without training: drop every class that the segmenter's own argmax gives less
than a fraction `min_area` of the image (never the background class, never the image's largest
class) and take the argmax again over the classes left.
`min_area` is picked on the train split's masks only (as the table's thresholds are); val is
read at that pick, next to val with no dropping and val restricted to the true tags.

    python benchmarks/imagelevel_presence.py --data data/synthetic-128-seed1 \\
        --segmenters runs/imagelevel/propagation/sec_on_pseudo_seed0/model.pt,... \\
        --json benchmarks/results/imagelevel_presence.json

Results: the JSON (results_header's machine, versions, command).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from scribble_table import results_header

from wsdeploy.atomic import atomic_write_text

MIN_AREAS = "0,0.005,0.01,0.02,0.03,0.05,0.08,0.12"


def drop_small_classes(logits: torch.Tensor, min_area: float, *, keep: int | None = None) -> torch.Tensor:
    """Argmax labels after dropping the classes the argmax gives less than `min_area` of the image.

    Args:
        logits: (K, H, W) float, one image's class scores.
        min_area: fraction of the H*W pixels in [0, 1); 0 drops nothing.
        keep: a class never dropped (the background), or None.

    Returns:
        (H, W) int64 labels. The largest class is never dropped, so at least one survives. One
        round suffices: a dropped class's pixels go to classes that survive, whose areas only grow.
    """
    if logits.ndim != 3:
        raise ValueError(f"expected logits (K, H, W), got {tuple(logits.shape)}")
    if not 0.0 <= min_area < 1.0:
        raise ValueError(f"min_area must lie in [0, 1), got {min_area}")
    k = logits.shape[0]
    labels = logits.argmax(0)
    area = torch.bincount(labels.flatten(), minlength=k).double() / labels.numel()
    small = area < min_area
    small[area.argmax()] = False
    if keep is not None:
        small[keep] = False
    if not bool(small.any()):
        return labels
    return logits.masked_fill(small[:, None, None], float("-inf")).argmax(0)


def image_logits(model_path: str, data: str, split: str) -> tuple[list[torch.Tensor], list[np.ndarray], list[list[int]], int | None, int]:
    """Every image's (K, H, W) logits from the segmenter, with its mask and tags."""
    from wsdeploy.training.tags.relabel import load_segmenter, segmenter_logits
    from wsdeploy.training.tags.targets import dataset_background_index

    from wsdeploy.data.datasets import SegmentationDataset

    model, card = load_segmenter(model_path)
    model.eval()
    dataset = SegmentationDataset(data, split=split, labels="masks")
    logits, masks, tags = [], [], []
    for i in range(len(dataset)):
        item = dataset[i]
        logits.append(segmenter_logits(model, card, item["image"][None])[0].cpu())  # (K, H, W)
        masks.append(np.asarray(item["label"]))
        tags.append([int(t) for t in item["tags"]])
    return logits, masks, tags, dataset_background_index(dataset), len(dataset.classes)


def score(logits: list[torch.Tensor], masks: list[np.ndarray], k: int, min_area: float, bg: int | None) -> float:
    from wsdeploy.metrics import SegmentationMetric

    metric = SegmentationMetric(k)
    for lg, mask in zip(logits, masks):
        metric.update(drop_small_classes(lg, min_area, keep=bg).numpy(), mask)
    return float(metric.miou())


def score_given_tags(logits: list[torch.Tensor], masks: list[np.ndarray], tags: list[list[int]], k: int,
                     bg: int | None) -> float:
    from wsdeploy.metrics import SegmentationMetric

    metric = SegmentationMetric(k)
    for lg, mask, t in zip(logits, masks, tags):
        allowed = torch.zeros(k, dtype=torch.bool)
        allowed[t + ([bg] if bg is not None else [])] = True
        metric.update(lg.masked_fill(~allowed[:, None, None], float("-inf")).argmax(0).numpy(), mask)
    return float(metric.miou())


def absent_class_statistics(logits: list[torch.Tensor], tags: list[list[int]], k: int, bg: int | None) -> dict:
    """How much of the argmax goes to classes the image's tags do not contain: the pixel fraction
    over the split, and the area (fraction of its image) of each absent class where predicted."""
    absent_pixels, pixels, areas = 0, 0, []
    for lg, t in zip(logits, tags):
        labels = lg.argmax(0)
        area = torch.bincount(labels.flatten(), minlength=k).double() / labels.numel()
        present = set(t) | ({bg} if bg is not None else set())
        absent = [c for c in range(k) if c not in present and area[c] > 0]
        absent_pixels += int(sum(area[c] for c in absent) * labels.numel())
        pixels += labels.numel()
        areas += [float(area[c]) for c in absent]
    return {"absent_pixel_fraction": absent_pixels / pixels, "absent_class_predictions": len(areas),
            "absent_class_area_median": statistics.median(areas) if areas else None,
            "absent_class_area_share_of_pixels_in_regions_over_5pct": (
                sum(a for a in areas if a >= 0.05) / sum(areas) if areas else None)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the image-level table's dataset (masks of train and val)")
    p.add_argument("--segmenters", required=True, help="comma list of tags-trained segmenters (model.pt)")
    p.add_argument("--min-areas", default=MIN_AREAS, help="candidate fractions, picked on train (default: %(default)s)")
    p.add_argument("--json", default="benchmarks/results/imagelevel_presence.json", help="results file")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        areas = [float(a) for a in args.min_areas.split(",") if a.strip()]
    except ValueError:
        p.error(f"--min-areas must be a comma list of numbers, got {args.min_areas!r}")
    if not areas or any(not 0.0 <= a < 1.0 for a in areas):
        p.error(f"--min-areas must be fractions in [0, 1), got {args.min_areas!r}")
    paths = [s for s in args.segmenters.split(",") if s]
    if missing := [s for s in paths if not Path(s).is_file()]:
        p.error(f"no such segmenter: {missing}")
    rows = []
    for path in paths:
        try:  # a classifier given as a segmenter, a folder that is not a dataset: one line, not a traceback
            train = image_logits(path, args.data, "train")
            val_logits, val_masks, val_tags, _, _ = image_logits(path, args.data, "val")
        except (ValueError, OSError) as exc:
            p.error(str(exc))
        _, _, _, bg, k = train
        train_miou = {f"{a:g}": score(train[0], train[1], k, a, bg) for a in areas}
        pick = max(areas, key=lambda a: train_miou[f"{a:g}"])
        row = {"segmenter": path, "train_miou_per_min_area": train_miou, "min_area_picked_on_train": pick,
               "val_miou_no_dropping": score(val_logits, val_masks, k, 0.0, bg),
               "val_miou_at_pick": score(val_logits, val_masks, k, pick, bg),
               "val_miou_given_true_tags": score_given_tags(val_logits, val_masks, val_tags, k, bg),
               "val_absent_classes": absent_class_statistics(val_logits, val_tags, k, bg)}
        rows.append(row)
        absent = row["val_absent_classes"]
        print(f"{path}: min area {pick:g} (train {train_miou[f'{pick:g}']:.4f}); val {row['val_miou_no_dropping']:.4f} "
              f"-> {row['val_miou_at_pick']:.4f} (true tags {row['val_miou_given_true_tags']:.4f}); absent classes "
              f"take {absent['absent_pixel_fraction']:.1%} of val pixels, median area {absent['absent_class_area_median']}",
              flush=True)
    results = {**results_header(data=args.data), "min_areas": areas,
               "rule": "min_area with the highest train mIoU; val read once at that pick", "rows": rows,
               "mean_val_gain": statistics.mean(r["val_miou_at_pick"] - r["val_miou_no_dropping"] for r in rows)}
    atomic_write_text(args.json, json.dumps(results, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
