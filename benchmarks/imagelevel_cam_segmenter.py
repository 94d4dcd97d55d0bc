"""The CAM classifier as the segmenter, with the tags it predicts itself (issue 14).

The table's CAM rows compute CAMs only for each image's *true* tags, which a deployed model does
not have. Here each classifier segments the val images on its own: multi-scale CAMs (the `wsdeploy
cam` defaults: scales 0.5-2, flips), normalised per class, argmax over (a) the true tags (the
table's setting, as a reference) and (b) the tags it predicts (sigmoid > 0.5, at least its top
class; the threshold is its training loss's, not tuned). mIoU over every pixel (no background
class in the synthetic set, so argmax labels every pixel). No training, nothing picked on val.
A classifier may be an ensemble, `name=a.pt+b.pt+...`: its tag probabilities are the members'
mean and its class scores the mean of their normalised CAMs.

    python benchmarks/imagelevel_cam_segmenter.py --data data/synthetic-128-seed1 \\
        --classifiers clf=runs/imagelevel/classifier/model.pt --out benchmarks/results/imagelevel_cam_segmenter.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from imagelevel_gating import checked_paths, members, predicted_tags, tag_quality
from scribble_table import results_header

from wsdeploy.atomic import atomic_write_text
from wsdeploy.checkpoint import load_checkpoint
from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.data.image_io import normalize
from wsdeploy.metrics import SegmentationMetric


def cam_labels(cams: torch.Tensor | list[torch.Tensor], allowed: torch.Tensor) -> np.ndarray:
    """Argmax of `normalize_cams(cams, allowed)`: cams (1, K, H, W) raw multi-scale sums, or a
    list of them (an ensemble: the mean of each member's normalised CAMs), allowed (1, K) bool
    (at least one True). Returns (H, W) uint8 class indices."""
    from wsdeploy.training.tags.cam import normalize_cams

    cams = [cams] if isinstance(cams, torch.Tensor) else cams
    scores = sum(normalize_cams(c, allowed) for c in cams) / len(cams)
    scores = scores.masked_fill(~allowed[:, :, None, None], -1.0)  # an allowed class wins even at 0
    return scores[0].argmax(0).numpy().astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder (images, masks, tags)")
    parser.add_argument("--classifiers", required=True, help="comma list of name=model.pt (CAM classifiers)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", default="benchmarks/results/imagelevel_cam_segmenter.json")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        parser.error(f"--data: no such folder: {args.data}")
    classifiers = checked_paths(parser, args.classifiers, "classifier")
    torch.set_num_threads(1)
    from wsdeploy.training.tags.cam import multiscale_cam

    dataset = SegmentationDataset(args.data, split=args.split, labels="masks")
    k = len(dataset.classes)
    results = {**results_header(data=args.data), "split": args.split, "classifiers": {}}
    for name, spec in classifiers.items():
        models = [load_checkpoint(path) for path in members(spec)]
        for model, _ in models:
            model.eval()
        metrics = {"true_tags": SegmentationMetric(k), "predicted_tags": SegmentationMetric(k)}
        probs, tags = [], []
        for i in range(len(dataset)):
            item = dataset[i]
            p, cams = torch.zeros(1, k), []
            for model, card in models:
                x = normalize(torch.as_tensor(item["image"][None]), tuple(card.mean), tuple(card.std))
                with torch.no_grad():
                    p += model(x).sigmoid() / len(models)  # (1, K), the members' mean
                    cams.append(multiscale_cam(model, x))  # (1, K, H, W) each
            true = torch.zeros(1, k, dtype=torch.bool)
            true[0, [int(t) for t in item["tags"]]] = True
            for gate, allowed in (("true_tags", true), ("predicted_tags", predicted_tags(p))):
                metrics[gate].update(cam_labels(cams, allowed), item["label"])
            probs.append(p[0])
            tags.append(true[0])
        results["classifiers"][name] = {
            "model": spec, **{f"miou_{g}": m.miou() for g, m in metrics.items()},
            "tags": tag_quality(torch.stack(probs), torch.stack(tags), dataset.classes),
        }
        r = results["classifiers"][name]
        print(f"{name}: CAM argmax mIoU {r['miou_true_tags']:.4f} with the true tags, "
              f"{r['miou_predicted_tags']:.4f} with its own (tag F1 {r['tags']['f1']:.3f})", flush=True)
    atomic_write_text(args.out, json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
