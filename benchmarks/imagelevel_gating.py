"""Can the tag classifier tell a tags-trained segmenter which classes are present? (issue 14)

The segmenters from tags lose 8-9 val mIoU points to not knowing which classes an image
contains (`imagelevel_diagnosis.py`: restricted to the true tags they score far higher). This
script asks whether the CAM classifier's own predictions can stand in for the true tags at
inference, which would make a deployable two-model pipeline. No training: it reads finished
models and reports, per split,

A classifier may be an ensemble, `name=a.pt+b.pt+...`: its probabilities are the members' mean.

- each classifier's tag prediction quality at sigmoid > 0.5 (precision, recall, F1, per class,
  and the share of images whose predicted tag set is exactly right);
- each (segmenter, classifier) pair's mIoU with the segmenter's softmax as trained (`all`),
  restricted to the true tags (`true_tags`, the ceiling), to the predicted tags (`hard`, sigmoid
  > 0.5, at least the top class), and weighted by the classifier's probabilities,
  p_seg(c | x) * p_cls(c)^a (`soft_a`, for each power a).

The gate (none, hard or one power) is picked per pair on the **train** split's mIoU and val is
read once at that pick, as the image-level table picks its thresholds.

    python benchmarks/imagelevel_gating.py --data data/synthetic-128-seed1 \\
        --segmenters sec=runs/.../sec_on_pseudo_seed0/model.pt --classifiers clf=runs/.../classifier/model.pt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scribble_table import results_header

from wsdeploy.atomic import atomic_write_text
from wsdeploy.data.datasets import SegmentationDataset


def named_paths(text: str, flag: str) -> dict[str, str]:
    """`name=path,name=path` (or bare paths, named by position) as an ordered dict; a path may be
    an ensemble, `a.pt+b.pt` (`members` splits it)."""
    out = {}
    for i, part in enumerate(p for p in text.split(",") if p):
        name, _, path = part.rpartition("=") if "=" in part else (f"{flag}{i}", "", part)
        out[name] = path
    return out


def checked_paths(parser: argparse.ArgumentParser, text: str, flag: str) -> dict[str, str]:
    """`named_paths(text)`, or a usage error (exit 2) if it names nothing or a missing file."""
    paths = named_paths(text, flag)
    if not paths:
        parser.error(f"--{flag}s names no model.pt")
    if missing := [path for spec in paths.values() for path in members(spec) if not Path(path).is_file()]:
        parser.error(f"--{flag}s: no such file: {', '.join(missing)}")
    return paths


def members(spec: str) -> list[str]:
    """The model.pt paths of `spec`: one path, or an ensemble `a.pt+b.pt+...`."""
    return [path for path in spec.split("+") if path]


def classifier_probs(spec: str, items: list[dict]) -> torch.Tensor:
    """(N, K) float32 sigmoid probabilities of the classifier `spec` on each item's image; for an
    ensemble (`members`), the mean of its members' probabilities."""
    from wsdeploy.checkpoint import load_checkpoint
    from wsdeploy.data.image_io import normalize

    total = None
    for path in members(spec):
        model, card = load_checkpoint(path)
        model.eval()
        with torch.no_grad():
            probs = torch.cat([
                model(normalize(torch.as_tensor(it["image"][None]), tuple(card.mean), tuple(card.std))).sigmoid()
                for it in items
            ])
        total = probs if total is None else total + probs
    return total / len(members(spec))


def predicted_tags(probs: torch.Tensor) -> torch.Tensor:
    """The tags a classifier predicts: (N, K) sigmoid probabilities -> (N, K) bool, those > 0.5
    (its training loss's natural threshold, not tuned) and at least each image's top class."""
    tags = probs > 0.5
    tags[torch.arange(len(probs)), probs.argmax(1)] = True
    return tags


def tag_quality(probs: torch.Tensor, tags: torch.Tensor, classes: list[str]) -> dict:
    """Precision / recall / F1 of `probs > 0.5` against `tags` ((N, K) bool), overall and per class."""
    pred = probs > 0.5

    def prf(p: torch.Tensor, t: torch.Tensor) -> dict:
        tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
        return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1),
                "f1": 2 * tp / max(2 * tp + fp + fn, 1), "true": int(t.sum()), "predicted": int(p.sum())}

    return {**prf(pred, tags), "exact_set": float((pred == tags).all(1).float().mean()),
            "per_class": {name: prf(pred[:, c], tags[:, c]) for c, name in enumerate(classes)}}


def gate_scores(
    seg_probs: list[torch.Tensor], labels: list[np.ndarray], tags: torch.Tensor, cls_probs: torch.Tensor,
    powers: list[float], k: int,
) -> dict[str, float]:
    """mIoU of every gate over the images: seg_probs[i] (K, H, W) softmax, labels[i] (H, W)."""
    from wsdeploy.metrics import SegmentationMetric

    gates = {"all": torch.ones_like(cls_probs), "true_tags": tags.float(), "hard": predicted_tags(cls_probs).float(),
             **{f"soft_{a:g}": cls_probs**a for a in powers}}
    out = {}
    for name, weight in gates.items():
        metric = SegmentationMetric(k)
        for probs, label, w in zip(seg_probs, labels, weight):
            metric.update((probs * w[:, None, None]).argmax(0).numpy().astype(np.uint8), label)
        out[name] = metric.miou()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder (images, masks, tags)")
    parser.add_argument("--segmenters", required=True, help="comma list of name=model.pt (tags-trained segmenters)")
    parser.add_argument("--classifiers", required=True, help="comma list of name=model.pt (CAM classifiers)")
    parser.add_argument("--powers", default="0.5,1,2", help="powers a of the soft gate p_cls^a")
    parser.add_argument("--out", default="benchmarks/results/imagelevel_gating.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from wsdeploy.training.tags.relabel import load_segmenter, segmenter_logits

    if not Path(args.data).is_dir():
        parser.error(f"--data: no such folder: {args.data}")
    segmenters = checked_paths(parser, args.segmenters, "segmenter")
    classifiers = checked_paths(parser, args.classifiers, "classifier")
    try:
        powers = [float(a) for a in args.powers.split(",") if a]
    except ValueError:
        powers = []
    if not powers or min(powers) <= 0:
        parser.error(f"--powers expects a comma list of positive numbers, got {args.powers!r}")
    results = {**results_header(data=args.data), "segmenters": segmenters, "classifiers": classifiers,
               "powers": powers, "classifier_tags": {}, "gates": {}}
    scores: dict[str, dict] = {}  # split -> "seg|clf" -> gate -> mIoU
    for split in ("train", "val"):
        dataset = SegmentationDataset(args.data, split=split, labels="masks")
        k = len(dataset.classes)
        items = [dataset[i] for i in range(len(dataset))]
        tags = torch.zeros(len(items), k, dtype=torch.bool)
        for i, it in enumerate(items):
            tags[i, [int(t) for t in it["tags"]]] = True
        cls_probs = {name: classifier_probs(path, items) for name, path in classifiers.items()}
        results["classifier_tags"][split] = {name: tag_quality(p, tags, dataset.classes) for name, p in cls_probs.items()}
        scores[split] = {}
        for seg_name, path in segmenters.items():
            model, card = load_segmenter(path)
            model.eval()
            with torch.no_grad():
                seg_probs = [segmenter_logits(model, card, it["image"][None]).softmax(1)[0] for it in items]
            for cls_name, p in cls_probs.items():
                key = f"{seg_name}|{cls_name}"
                scores[split][key] = gate_scores(seg_probs, [it["label"] for it in items], tags, p, powers, k)
                print(f"[{split}] {key}: " + ", ".join(f"{g} {v:.4f}" for g, v in scores[split][key].items()),
                      flush=True)
    for key, train in scores["train"].items():
        deployable = {g: v for g, v in train.items() if g != "true_tags"}  # the ceiling is not a gate
        pick = max(deployable, key=deployable.get)
        val = scores["val"][key]
        results["gates"][key] = {"train": train, "val": val, "picked_on_train": pick,
                                 "val_at_pick": val[pick], "val_gain_over_all": val[pick] - val["all"]}
    atomic_write_text(args.out, json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    for key, g in results["gates"].items():
        print(f"  {key}: picked {g['picked_on_train']} on train; val {g['val']['all']:.4f} -> {g['val_at_pick']:.4f} "
              f"(true tags {g['val']['true_tags']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
