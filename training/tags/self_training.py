"""Self-training rounds: train a segmenter on pseudo-masks, re-label the split with it, repeat.

    wsdeploy train --supervision tags --method seeds-rloss --seeds runs/pseudo --rounds 2 \
        --relabel-crf --relabel-confidence 0.5 --out-dir runs/self ...

    from wsdeploy.training.tags.self_training import self_train
    models = self_train(config)          # config.rounds, config.seeds, config.out_dir, config.relabel

Round r (1-based) lives in `<out_dir>/round<r>/`:

    train/       the trainer's folder (config.yaml, last.pt, train_log.jsonl, model.pt);
                 round 1 trains on `config.seeds`, round r > 1 on round r-1's labels/
    labels/      `<id>.png` for every image of the train split (dataset class indices, 255 =
                 unsure; `relabel_dataset`), and `labels.json`, written last

Every round's model and labels are kept. Calling `self_train` again continues where it stopped:
a round whose `labels/labels.json` exists is skipped (after checking it was made with the same
settings); a round with `train/model.pt` is re-labelled only; a round with `train/last.pt`
resumes training from it (`wsdeploy.training.train(resume=...)`), which reproduces the
uninterrupted run, and re-labelling is deterministic, so an interrupted driver ends with the
same models and labels as one that never stopped.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from wsdeploy.atomic import atomic_write_text
from wsdeploy.crf import CRFParams

__all__ = ["LABELS_MANIFEST", "round_paths", "self_train"]

logger = logging.getLogger(__name__)

LABELS_MANIFEST = "labels.json"


def round_paths(out_dir: str | Path, r: int) -> tuple[Path, Path]:
    """(train folder, labels folder) of round r."""
    root = Path(out_dir) / f"round{r}"
    return root / "train", root / "labels"


def self_train(base: Any, *, command: str | None = None) -> list[Path]:
    """Run (or continue) `base.rounds` self-training rounds; return each round's model.pt.

    Args:
        base: the segmenter's `TrainConfig` (supervision "tags", method "seeds-rloss"):
            `seeds` = round 1's pseudo-masks (PNGs like `wsdeploy cam --seeds-out`), `out_dir`
            = the rounds' parent folder, `rounds` = N, `relabel.crf` / `relabel.confidence` =
            how each round re-labels (dense CRF or not; pixels whose top probability is below
            the confidence become 255), `device` = where training and re-labelling run. Each
            round trains `base` with its own `seeds` and `out_dir`.
        command: recorded in every round's model card and labels.json.

    Raises:
        ValueError: bad settings, a base config that is not tags + seeds-rloss, or a round's
            labels made with other settings than these.
    """
    from wsdeploy.data.datasets import SegmentationDataset
    from wsdeploy.data.image_io import write_label_png
    from wsdeploy.training import train
    from wsdeploy.training.config import config_to_dict
    from wsdeploy.training.tags.relabel import load_segmenter, relabel_dataset

    rounds, out_dir, device = base.rounds, base.out_dir, base.device
    crf = CRFParams() if base.relabel.crf else None
    confidence = base.relabel.confidence or None
    if base.supervision != "tags" or base.method != "seeds-rloss":
        raise ValueError(
            f"self-training trains segmenters on pseudo-masks: supervision 'tags' and method "
            f"'seeds-rloss', got {base.supervision!r} / {base.method!r}"
        )
    labels = _resolve_seeds(base)
    images = SegmentationDataset(base.data, split=base.train_split, labels=None)
    current = labels
    models = []
    for r in range(1, rounds + 1):
        train_dir, label_dir = round_paths(out_dir, r)
        # rounds=1: a round is one training run, the same whether the driver runs 2 rounds or 3
        config = dataclasses.replace(base, seeds=str(current), out_dir=str(train_dir), rounds=1)
        settings = {"round": r, "trained_on": str(current), "config": config_to_dict(config),
                    "crf": None if crf is None else crf.as_dict(), "confidence": confidence}
        manifest = label_dir / LABELS_MANIFEST
        model_path = train_dir / "model.pt"
        if manifest.is_file():
            done = json.loads(manifest.read_text(encoding="utf-8"))
            if {k: done.get(k) for k in settings} != settings:
                raise ValueError(
                    f"{manifest} was made with other settings than this run's (round {r}); use "
                    "another out_dir or delete the round's folder"
                )
            logger.info("round %d: done, reusing %s", r, label_dir)
        else:
            if not model_path.is_file():
                last = train_dir / "last.pt"
                resume = last if last.is_file() else None
                logger.info("round %d: training on %s%s", r, current, f" (resuming {last})" if resume else "")
                train(config, resume=resume, command=command)
            model, card = load_segmenter(model_path)
            label_dir.mkdir(parents=True, exist_ok=True)
            seeded = pixels = 0
            for image_id, out in relabel_dataset(model, card, images, crf=crf, confidence=confidence,
                                                 device=device):
                write_label_png(label_dir / f"{image_id}.png", out)
                seeded += int((out != 255).sum())
                pixels += out.size
            atomic_write_text(manifest, json.dumps({
                **settings, "model": str(model_path.resolve()), "images": len(images),
                "labelled_fraction": seeded / max(pixels, 1), "command": command,
            }, indent=2) + "\n")
        models.append(model_path)
        current = label_dir.resolve()
    return models


def _resolve_seeds(base: Any) -> Path:
    """Round 1's labels: `base.seeds` from the working directory, else inside the dataset."""
    for candidate in (Path(base.seeds), Path(base.data) / base.seeds):
        if candidate.is_dir():
            return candidate.resolve()
    raise ValueError(f"round 1's labels folder {base.seeds!r} exists neither here nor in {base.data!r}")
