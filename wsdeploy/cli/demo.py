"""`wsdeploy demo`: the bundled default model on the bundled sample images.

Writes NAME_mask.png and NAME_overlay.png per image and `summary.json`, and prints per-image
statistics (classes present, latency, IoU against the sample's mask) and the mIoU over the set.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

__all__ = ["DEMO_DATA_PATH", "add_arguments", "run"]

DEMO_DATA_PATH = Path(__file__).resolve().parent.parent / "assets" / "demo_data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--model", default=None, help="checkpoint to use instead of the bundled model")
    parser.add_argument("--data", default=str(DEMO_DATA_PATH), help="dataset folder (default: the bundled samples)")
    parser.add_argument("--split", default="val", help="split of --data to segment (default: val)")
    parser.add_argument("--limit", type=int, default=None, help="segment only the first N images")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu' or 'cuda[:N]'")
    parser.add_argument("--crf", action="store_true", help="refine with the dense CRF")


def run(args: argparse.Namespace) -> int:
    import wsdeploy
    from wsdeploy.atomic import atomic_write_text
    from wsdeploy.data.datasets import SegmentationDataset
    from wsdeploy.data.image_io import write_image, write_label_png
    from wsdeploy.metrics import SegmentationMetric, mean_iou
    from wsdeploy.runtime import DEFAULT_MODEL_PATH
    from wsdeploy.visualize import overlay

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    model_path = Path(args.model) if args.model else DEFAULT_MODEL_PATH
    model = wsdeploy.load(model_path, device=args.device, crf=args.crf)
    data = SegmentationDataset(args.data, split=args.split, labels=None)
    has_masks = data.index.mask_dir is not None
    if has_masks:
        data = SegmentationDataset(args.data, split=args.split, labels="masks")
    if data.classes != model.classes:
        raise ValueError(f"the model's classes {model.classes} differ from the data's {data.classes}")
    count = len(data) if args.limit is None else min(args.limit, len(data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"model: {model_path.name} ({model.card['arch']}, {model.card['supervision']} supervision), "
          f"device: {model.device}, data: {args.data} [{args.split}], {count} image(s)")

    metric = SegmentationMetric(len(model.classes), class_names=model.classes)
    model.segment(data[0]["image"])  # warm-up, not timed
    rows, latencies = [], []
    for i in range(count):
        item = data[i]
        t0 = time.perf_counter()
        seg = model.segment(item["image"])
        latency = time.perf_counter() - t0
        latencies.append(latency)
        write_label_png(out / f"{item['id']}_mask.png", seg.labels)
        write_image(out / f"{item['id']}_overlay.png", overlay(item["image"], seg.labels, model.palette))
        total = seg.labels.size
        shares = {k: round(n / total, 3) for k, n in seg.class_pixel_counts().items()}
        row = {"id": item["id"], "size": list(seg.labels.shape), "latency_ms": round(1000 * latency, 1),
               "class_share": shares}
        if item["label"] is not None:
            metric.update(seg.labels, item["label"])
            row["miou"] = round(mean_iou(seg.labels, item["label"], len(model.classes)), 4)
        rows.append(row)
        print(f"  {item['id']}: {row['size'][1]}x{row['size'][0]}  {row['latency_ms']:7.1f} ms"
              + (f"  mIoU {row['miou']:.3f}" if "miou" in row else "")
              + "  " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))

    summary = {"model": str(model_path), "data": args.data, "split": args.split, "images": rows,
               "median_latency_ms": round(1000 * statistics.median(latencies), 1)}
    if has_masks:
        summary["metrics"] = metric.summary()
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    print(f"median latency {summary['median_latency_ms']} ms per image (segment(), end to end)")
    if has_masks:
        print(f"mIoU over {count} image(s): {metric.miou():.4f}  (pixel accuracy {metric.pixel_accuracy():.4f})")
        for name, iou in summary["metrics"]["per_class_iou"].items():
            print(f"  {name:>12}: {'-' if iou is None else f'{iou:.3f}'}")
    print(f"wrote masks, overlays and summary.json to {out}")
    return 0
