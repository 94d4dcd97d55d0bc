"""The trainer's tasks of the propagation pipeline: the affinity net, and the classifier with
regional contrast (see `wsdeploy.training.tasks` for what a task is).

    wsdeploy train --supervision tags --method affinity --affinity-classifier runs/cls/model.pt \
        --seeds runs/seeds --affinity-background sky,grass,sand,water --out-dir runs/affinity
    wsdeploy train --supervision tags --model classifier_resnet18 --contrast-weight 0.1 ...

`AffinityTask`: the model is `AffinityNet` on the frozen classifier of `affinity_classifier`
(its `model`, `output_stride` and `width` come from that checkpoint, not from the config); the
loss is `affinity_loss` on the pairs of the batch's seed crops; val evaluation labels the pairs
of the val masks the same way and reports the share of positive pairs with affinity > 0.5 and
of negative pairs below it (`pair_accuracy` = their mean). model.pt is an affinity checkpoint
(`load_affinity_checkpoint`; `wsdeploy cam --propagate` reads it).

`ContrastClassifierTask`: the classifier task plus `contrast_weight` x the regional contrast
loss of `RegionContrast`, pooled from the classifier's layer4 features under its own CAMs (a
forward hook on its 1x1 classifier conv captures both). The contrast module (projection and
memory bank) is attached to the model as `model.contrast`, so the optimizer trains it and
last.pt saves and resumes it with the model; model.pt holds the classifier alone.
"""
from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from wsdeploy.checkpoint import ModelCard, load_checkpoint
from wsdeploy.models import CAMClassifier
from wsdeploy.training.collate import network_input
from wsdeploy.training.distributed import DistContext, all_reduce_sum
from wsdeploy.training.tags.affinity import (
    AFFINITY_PREFIX,
    AffinityLabels,
    AffinityNet,
    affinity_labels,
    affinity_loss,
)
from wsdeploy.training.tags.contrast import RegionContrast
from wsdeploy.training.tags.targets import tags_to_foreground_multihot
from wsdeploy.training.tasks import ClassifierTask, Task

__all__ = ["AffinityTask", "ContrastClassifierTask"]


class AffinityTask(Task):
    """Method 'affinity' (module docstring)."""

    method = "affinity"
    labels = "scribbles"  # the seeds, read as partial labels
    metric = "pair_accuracy"
    term_names = ["affinity"]

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        path = config.affinity.classifier
        classifier, card = load_checkpoint(path)
        if not isinstance(classifier, CAMClassifier):
            raise ValueError(f"affinity_classifier {path} is a {card.arch!r} model; it must be a CAM classifier "
                             "(the model.pt of `wsdeploy train --supervision tags --model classifier_*`)")
        self.classifier, self.classifier_card = classifier, card
        self.background_classes: list[int] = []

    def bind(self, dataset: Any) -> None:
        super().bind(dataset)
        names = self.config.affinity.background_names
        unknown = [n for n in names if n not in self.dataset_classes]
        if unknown:
            raise ValueError(f"affinity_background names {unknown} are not dataset classes {self.dataset_classes}")
        if names:
            self.background_classes = [self.dataset_classes.index(n) for n in names]
        else:
            self.background_classes = [] if self.background is None else [self.background]

    @property
    def classes(self) -> list[str]:
        return list(self.classifier_card.classes)

    def build_model(self, model_kwargs: dict[str, Any]) -> nn.Module:
        a = self.config.affinity
        return AffinityNet(self.classifier, radius=a.radius, stride=a.stride, dim=a.dim)

    def check_model(self, model: nn.Module) -> None:
        if not isinstance(model, AffinityNet):
            raise ValueError("method 'affinity' trains an AffinityNet")

    def _labels(self, label: Tensor) -> AffinityLabels:
        a = self.config.affinity
        return affinity_labels(label, stride=a.stride, radius=a.radius, background_classes=self.background_classes)

    def loss(self, out: Tensor, batch: dict[str, Any], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """out (B, D, H/s, W/s) affinities; batch["label"] (B, H, W) seeds (255 none, 254 padding)."""
        loss = affinity_loss(out.float(), self._labels(batch["label"]))
        return loss, {"affinity": loss}

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, batches: Any, ctx: DistContext, autocast: AbstractContextManager[Any]
    ) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        counts = torch.zeros(4, dtype=torch.float64, device=ctx.device)  # pos right, pos, neg right, neg
        try:
            for batch in batches:
                with autocast or nullcontext():
                    aff = model(network_input(batch["image"].to(ctx.device))).float()  # (B, D, h, w)
                labels = self._labels(batch["label"].to(ctx.device))
                pos = labels.foreground | labels.background
                counts += torch.stack([(aff[pos] > 0.5).sum(), pos.sum(),
                                       (aff[labels.negative] < 0.5).sum(), labels.negative.sum()]).double()
        finally:
            model.train(was_training)
        all_reduce_sum(counts, ctx)
        pos_acc = float(counts[0] / counts[1]) if counts[1] else None
        neg_acc = float(counts[2] / counts[3]) if counts[3] else None
        parts = [v for v in (pos_acc, neg_acc) if v is not None]
        return {"pair_accuracy": sum(parts) / len(parts) if parts else None, "positive_accuracy": pos_acc,
                "negative_accuracy": neg_acc, "positive_pairs": int(counts[1]), "negative_pairs": int(counts[3])}

    def card(self, card: ModelCard) -> ModelCard:
        a = self.config.affinity
        clf = self.classifier_card
        return dataclasses.replace(
            card, arch=AFFINITY_PREFIX + clf.arch, arch_kwargs=dict(clf.arch_kwargs), classes=list(clf.classes),
            palette=clf.palette, mean=list(clf.mean), std=list(clf.std),
            training={**card.training, "affinity": {"radius": a.radius, "stride": a.stride, "dim": a.dim},
                      "classifier": str(Path(a.classifier).resolve()),
                      "affinity_background": [self.dataset_classes[i] for i in self.background_classes]},
        )


class ContrastClassifierTask(ClassifierTask):
    """The classifier task + regional contrast (module docstring)."""

    term_names = ["soft_margin", "region_contrast"]
    uses_cams = True  # ClassifierTask's hook captures the features and CAMs the contrast pools

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.contrast: RegionContrast | None = None

    def build_model(self, model_kwargs: dict[str, Any]) -> nn.Module:
        model = super().build_model(model_kwargs)
        c = self.config.contrast
        model.contrast = RegionContrast(num_classes=len(self.classes), in_channels=model.classifier.in_channels,
                                        dim=c.dim, bank_size=c.bank_size, temperature=c.temperature)
        self.contrast = model.contrast
        return model

    def loss(self, out: Tensor, batch: dict[str, Any], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        loss, terms = super().loss(out, batch, step)
        if self._captured is None or self.contrast is None:
            raise RuntimeError("the classifier's forward hook captured nothing; build the model with this task")
        features, cams = self._captured
        tags = tags_to_foreground_multihot(batch["tags"], len(self.dataset_classes), self.background).to(out.device)
        contrast = self.config.contrast.weight * self.contrast(features, cams.detach(), tags)
        return loss + contrast, {**terms, "region_contrast": contrast}

    def deployable(self, model: nn.Module) -> nn.Module:
        """The classifier without `contrast` (model.pt loads as a plain classifier_* model)."""
        if hasattr(model, "contrast"):
            del model.contrast
        return model
