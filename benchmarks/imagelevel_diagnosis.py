"""Why do seeds + regularized losses end below their seeds? Numbers from finished artefacts only.

No training: reads the image-level table's JSON and the dataset's train masks and reports
(1) the train split's class balance (pixel share, images tagged, mean area when present, stuff
vs objects), (2) every final run's per-class IoU as a share of full supervision's, averaged over
stuff and over object classes, and (3) the seed sweep's precision / coverage trade-off.

    python benchmarks/imagelevel_diagnosis.py --data data/synthetic-128-seed1 \
        --table benchmarks/results/imagelevel_table.json --out benchmarks/results/imagelevel_diagnosis.json

With `--segmenters` (model.pt files of tags-trained segmenters), also (4) each one's val mIoU with
its softmax restricted to the images' true tags, as the CAM and pseudo-mask rows are, next to
its plain val mIoU; with `--label-dirs`, (5) the train mIoU of label folders (seeds,
pseudo-masks, a self-training round's labels).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from imagelevel_gating import predicted_tags
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


def segmenter_given_tags(model_path: str, data: str, split: str = "val", classifier: str | None = None) -> dict:
    """A tags-trained segmenter's mIoU on `split` as trained (softmax over every class) and with
    its softmax restricted to each image's true tags (+ the background class, if any): the
    second is what the CAM and pseudo-mask rows get, since CAMs are computed only for an
    image's tags; the difference is what the segmenter loses by having to tell which classes
    are present. With `classifier` (the CAM classifier's model.pt), also restricted to the tags
    it predicts (sigmoid > 0.5, its training loss's natural threshold, not tuned; at least its
    top class): a deployable pipeline. No CRF, same argmax as `relabel_images`."""
    import torch

    from wsdeploy.checkpoint import load_checkpoint
    from wsdeploy.data.image_io import normalize
    from wsdeploy.metrics import SegmentationMetric
    from wsdeploy.training.tags.relabel import load_segmenter, relabel_images
    from wsdeploy.training.tags.targets import dataset_background_index

    model, card = load_segmenter(model_path)
    model.eval()
    clf = None
    if classifier is not None:
        clf, clf_card = load_checkpoint(classifier)
        clf.eval()
    dataset = SegmentationDataset(data, split=split, labels="masks")
    k = len(dataset.classes)
    bg = dataset_background_index(dataset)
    names = ["all_classes", "given_tags"] + (["given_predicted_tags"] if clf is not None else [])
    metrics = {name: SegmentationMetric(k) for name in names}
    for i in range(len(dataset)):
        item = dataset[i]
        allowed = {"all_classes": torch.ones(1, k, dtype=torch.bool), "given_tags": torch.zeros(1, k, dtype=torch.bool)}
        allowed["given_tags"][0, [int(t) for t in item["tags"]]] = True
        if clf is not None:
            with torch.no_grad():
                x = normalize(torch.as_tensor(item["image"][None]), tuple(clf_card.mean), tuple(clf_card.std))
                allowed["given_predicted_tags"] = predicted_tags(clf(x).sigmoid())  # (1, K)
        for name in names:
            if bg is not None:
                allowed[name][0, bg] = True
            metrics[name].update(relabel_images(model, card, item["image"][None], allowed[name])[0], item["label"])
    return {"model": model_path, "split": split, "images": len(dataset), "classifier": classifier,
            **{f"miou_{name}": m.miou() for name, m in metrics.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--table", default="benchmarks/results/imagelevel_table.json")
    parser.add_argument("--out", default="benchmarks/results/imagelevel_diagnosis.json")
    parser.add_argument("--segmenters", default="",
                        help="comma list of tags-trained model.pt files: each one's val mIoU with and without "
                        "its softmax restricted to the images' true tags")
    parser.add_argument("--classifier", default=None,
                        help="with --segmenters: the CAM classifier's model.pt, to also restrict each segmenter "
                        "to the tags it predicts (sigmoid > 0.5)")
    parser.add_argument("--label-dirs", default="",
                        help="comma list of train-split label folders (seeds, pseudo-masks, a round's labels): "
                        "each one's precision, coverage and mIoU against the train masks")
    args = parser.parse_args()
    table = json.loads(Path(args.table).read_text())
    classes = table["dataset"]["classes"]
    sweep = [{k: r[k] for k in ("fg_threshold", "precision", "coverage", "miou_as_background", "miou_ignored")}
             for r in table["sweep"]["rows"]]
    result = {**results_header(data=args.data), "table": args.table, "class_balance": class_balance(args.data),
              "final_runs_vs_full": ratios_to_full(table, classes), "seed_sweep_train": sweep}
    try:  # a classifier given as a segmenter, a missing file or folder: one line, not a traceback
        if args.segmenters:
            result["segmenters_given_tags"] = [segmenter_given_tags(p, args.data, classifier=args.classifier)
                                               for p in args.segmenters.split(",") if p]
        if args.label_dirs:
            from imagelevel_table import seed_statistics

            result["train_labels"] = [{"labels": d, **seed_statistics(args.data, Path(d))}
                                      for d in args.label_dirs.split(",") if d]
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    bal = result["class_balance"]
    print(f"stuff classes hold {100 * bal['stuff_pixel_share']:.1f}% of train pixels; {bal['tags_per_image']:.2f} tags/image")
    for name, r in result["final_runs_vs_full"].items():
        print(f"{name:>34}: mIoU {100 * r['miou']:.1f}; share of full: stuff {100 * r['stuff_mean_share']:.0f}%, "
              f"objects {100 * r['objects_mean_share']:.0f}%")
    for r in result.get("segmenters_given_tags", []):
        predicted = f", given the classifier's tags {100 * r['miou_given_predicted_tags']:.1f}" if r["classifier"] else ""
        print(f"{r['model']}: val mIoU {100 * r['miou_all_classes']:.1f}, given the true tags "
              f"{100 * r['miou_given_tags']:.1f}{predicted}")
    for r in result.get("train_labels", []):
        print(f"{r['labels']}: train mIoU {100 * r['miou_as_background']:.1f} (precision {100 * r['precision']:.1f}%, "
              f"coverage {100 * r['coverage']:.1f}%)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
