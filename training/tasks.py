"""What differs between the trainer's runs, chosen once: the task.

The training loop (`wsdeploy.training.trainer`) is the same for every run; what it learns from
is a small task object picked from the config by `make_task`:

| task                | config                                  | labels read       | loss                          | evaluation     |
|---------------------|-----------------------------------------|-------------------|-------------------------------|----------------|
| `SegmentTask`       | supervision full / scribbles            | masks / scribbles | pCE + regularizers            | val mIoU       |
| `SegmentTask`       | tags, method seeds-rloss                | CAM seeds         | pCE + regularizers            | val mIoU       |
| `SECTask`           | tags, method sec                        | CAM seeds + tags  | SEC seed / expand / constrain | val mIoU       |
| `ClassifierTask`    | tags, method classifier                 | tags              | multi-label soft margin       | val tag mAP    |
|                     | ... mosaic k > 1                        | tags of each tile | the same, per mosaic tile     | val tag mAP    |
| `ContrastClassifierTask` (tags/tasks.py) | classifier, contrast_weight > 0 | tags | + regional contrast    | val tag mAP    |
| `AffinityTask` (tags/tasks.py) | tags, method affinity        | CAM seeds         | balanced pair affinity        | val pair accuracy |

A task knows the model's classes, builds and checks the model, checks the data, computes the
loss of a batch, evaluates and says what model.pt holds; the loop does everything else (data
order, optimisation, AMP, DDP, logs, checkpoints). Batches reach `loss` on the device, the image once, as uint8:

    batch = {"image": (B, 3, H, W) uint8 RGB, "label": (B, H, W) int64 (255 unlabelled,
             254 padding) or None, "tags": list of B lists of class indices or None, ...}
    out = model(network_input(batch["image"]))      # normalised on the device, one place
    loss, terms = task.loss(out, batch, step)       # terms: name -> weighted scalar
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsdeploy.checkpoint import ModelCard
from wsdeploy.data.index import format_ids
from wsdeploy.data.labels import IGNORE_LABEL, PAD_LABEL
from wsdeploy.models import CAMClassifier, SegmentationModel, build_model, list_models
from wsdeploy.training.collate import tags_to_multihot
from wsdeploy.training.config import TrainConfig
from wsdeploy.training.distributed import DistContext
from wsdeploy.training.evaluate import evaluate
from wsdeploy.training.losses.dense import DenseCRFLoss, NormalizedCutLoss, loss_kernel
from wsdeploy.training.losses.pointwise import partial_cross_entropy
from wsdeploy.training.losses.proposals import ADMProposalLoss
from wsdeploy.training.tags.evaluate import evaluate_classifier
from wsdeploy.training.tags.mosaic import tile_scores
from wsdeploy.training.tags.targets import dataset_background_index, foreground_indices, tags_to_foreground_multihot

__all__ = ["ClassifierTask", "SECTask", "SegmentTask", "Task", "make_task"]


class Task:
    """The base: a segmenter evaluated by mIoU. Subclasses set `method`, `labels`, `term_names`
    and `loss`."""

    method: str = ""
    labels: str | None = None  # what the train split reads: "masks", "scribbles" or None
    metric: str = "miou"
    needs_tags: bool = False
    term_names: list[str] = []

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.dataset_classes: list[str] = []
        self.background: int | None = None

    def bind(self, dataset: Any) -> None:
        """Learn the training split's classes and background class; check its tags."""
        self.dataset_classes = list(dataset.classes)
        self.background = dataset_background_index(dataset)
        self.label_dir = getattr(getattr(dataset, "index", None), "scribble_dir", None)  # where the seeds were read
        self.check_dataset(dataset)

    def to(self, device: torch.device) -> Task:
        """Move the loss modules to `device`."""
        return self

    @property
    def classes(self) -> list[str]:
        """The model's output classes (a segmenter predicts every dataset class)."""
        return self.dataset_classes

    def build_model(self, model_kwargs: dict[str, Any]) -> nn.Module:
        """The model to train: `config.model` with one output per class of `classes`."""
        return build_model(self.config.model, len(self.classes), **model_kwargs)

    def card(self, card: ModelCard) -> ModelCard:
        """The model card written to model.pt (the trainer's, unchanged unless a task says)."""
        return card

    def deployable(self, model: nn.Module) -> nn.Module:
        """The module whose weights model.pt holds (the trained model unless a task says)."""
        return model

    def check_model(self, model: nn.Module) -> None:
        if not isinstance(model, SegmentationModel):
            segmenters = [m for m in list_models() if not m.startswith("classifier_")]
            raise ValueError(f"model {self.config.model!r} is not a segmentation model; use one of {segmenters}")

    def check_dataset(self, dataset: Any) -> None:
        """Every image of a split trained or evaluated on tags must have them (an empty list is
        fine: an image with none of the classes)."""
        if not self.needs_tags:
            return
        index = dataset.index
        if index.tags_from_masks:
            missing = [s.id for s in index.samples if s.mask is None]
            source = "a mask to derive them from"
        else:
            missing = [s.id for s in index.samples if s.tags is None]
            source = "a line in tags.txt (list an image with no class names to say it has none)"
        if missing:
            raise ValueError(
                f"{len(missing)} image(s) of split {index.split!r} have no tags: "
                f"{format_ids(missing)}; each needs {source}"
            )

    @property
    def val_labels(self) -> str | None:
        return "masks"

    def loss(self, out: Tensor, batch: dict[str, Any], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def evaluate(
        self, model: nn.Module, batches: Any, ctx: DistContext, autocast: AbstractContextManager[Any]
    ) -> dict[str, Any]:
        return evaluate(model, batches, class_names=self.classes, ctx=ctx, autocast=autocast)

    def card_fields(self) -> dict[str, Any]:
        """Extra `training` fields of the model card."""
        seeds = None if self.config.seeds is None else str(getattr(self, "label_dir", None) or self.config.seeds)
        return {
            "method": self.method,
            "background": None if self.background is None else self.dataset_classes[self.background],
            "seeds": seeds,  # the folder read (working directory first, else inside data), as given
        }


class SegmentTask(Task):
    """pCE on the labelled pixels (masks, scribbles or CAM seeds) plus the regularizers of
    `config.losses` on the softmax of every pixel, switched on at `config.regularizers_start`.
    The logits are upsampled to the crop (as rloss); the dense losses with the same kernel
    settings share one bilateral kernel per batch."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.method = "segment" if config.supervision != "tags" else config.resolved_method
        self.labels = "masks" if config.supervision == "full" else "scribbles"  # seeds: partial labels
        self.regularizers = {
            name: getattr(config, name).build(relaxation=config.relaxation)
            for name in config.loss_names if name != "pce"
        }
        self.term_names = ["pce", *self.regularizers]

    def to(self, device: torch.device) -> SegmentTask:
        self.regularizers = {n: m.to(device) for n, m in self.regularizers.items()}
        return self

    def loss(self, out: Tensor, batch: dict[str, Any], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """out (B, K, h, w) logits; batch["label"] (B, H, W); batch["image"] (B, 3, H, W) uint8."""
        label, image = batch["label"], batch["image"]
        logits = F.interpolate(out.float(), size=label.shape[-2:], mode="bilinear", align_corners=False)
        terms = {"pce": partial_cross_entropy(logits, label, ignore_index=IGNORE_LABEL, pad_index=PAD_LABEL)}
        if step >= self.config.regularizers_start and self.regularizers:
            probs = torch.softmax(logits, dim=1)  # (B, K, H, W)
            valid = label != PAD_LABEL  # (B, H, W) bool
            kernels: dict[tuple[float, float, float], Any] = {}
            for name, module in self.regularizers.items():
                if isinstance(module, (DenseCRFLoss, NormalizedCutLoss, ADMProposalLoss)):  # one kernel per settings
                    key = (module.sigma_rgb, module.sigma_xy, module.scale_factor)
                    if key not in kernels:
                        kernels[key] = loss_kernel(image, sigma_rgb=key[0], sigma_xy=key[1], scale_factor=key[2])
                    if isinstance(module, ADMProposalLoss):  # trains on this batch's proposals
                        terms[name] = module(logits, label, kernel=kernels[key])
                    else:
                        terms[name] = module(probs, None, valid, kernel=kernels[key])
                else:
                    terms[name] = module(probs, image.float(), valid)  # (B, 3, H, W) 0..255
        return torch.stack(list(terms.values())).sum(), terms


class SECTask(Task):
    """SEC (Kolesnikov & Lampert, ECCV 2016): seed, expand and constrain losses on CAM seeds
    and the image's tags, at the logits' resolution."""

    method = "sec"
    labels = "scribbles"  # the seeds, read as partial labels
    needs_tags = True
    term_names = ["seed", "expand", "constrain"]

    def bind(self, dataset: Any) -> None:
        super().bind(dataset)
        self.sec = self.config.sec.build(num_classes=len(self.dataset_classes), background_index=self.background)

    def to(self, device: torch.device) -> SECTask:
        self.sec = self.sec.to(device)
        return self

    def loss(self, out: Tensor, batch: dict[str, Any], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        label = batch["label"]
        tags = tags_to_multihot(batch["tags"], len(self.dataset_classes)).to(out.device)
        terms = self.sec(out.float(), label, tags, batch["image"].float(), valid=label != PAD_LABEL)
        return torch.stack(list(terms.values())).sum(), terms


class ClassifierTask(Task):
    """The CAM classifier: multi-label soft margin (per-class sigmoid BCE, averaged) on the
    image-level tags; it predicts the foreground classes only and is evaluated by tag mAP."""

    method = "classifier"
    labels = None
    metric = "map"
    needs_tags = True
    term_names = ["soft_margin"]
    uses_cams = False  # a subclass whose loss reads the captured features and CAMs sets this

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        # the last forward's layer4 features (B, C, h, w) and CAMs (B, K_fg, h, w), captured by a
        # hook on the 1x1 classifier conv when the loss needs them (mosaic tiles, regional contrast)
        self._captured: tuple[Tensor, Tensor] | None = None

    @property
    def classes(self) -> list[str]:
        keep = foreground_indices(len(self.dataset_classes), self.background)
        return [self.dataset_classes[i] for i in keep]

    @property
    def val_labels(self) -> str | None:
        return None

    def build_model(self, model_kwargs: dict[str, Any]) -> nn.Module:
        model = super().build_model(model_kwargs)
        if self.config.mosaic > 1 or self.uses_cams:  # tile scores need the CAMs, not their means

            def capture(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
                self._captured = (inputs[0], output)

            model.classifier.register_forward_hook(capture)
        return model

    def check_model(self, model: nn.Module) -> None:
        if not isinstance(model, CAMClassifier):
            raise ValueError(f"model {self.config.model!r} is not a CAM classifier (classifier_*)")

    def loss(self, out: Tensor, batch: dict[str, Any], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """out (B, K_fg) class scores (the CAMs' spatial means); with `mosaic` k > 1, the
        (B * k², K_fg) tile scores of the captured CAMs against each tile's own tags."""
        scores, tags = out, batch["tags"]
        if self.config.mosaic > 1:
            if self._captured is None or "tile_tags" not in batch:
                raise RuntimeError("mosaic training needs the model built by this task and mosaic batches")
            scores = tile_scores(self._captured[1], self.config.mosaic)
            tags = [tile for mosaic in batch["tile_tags"] for tile in mosaic]
        target = tags_to_foreground_multihot(tags, len(self.dataset_classes), self.background)
        loss = F.multilabel_soft_margin_loss(scores.float(), target.to(out.device))
        return loss, {"soft_margin": loss}

    def evaluate(
        self, model: nn.Module, batches: Any, ctx: DistContext, autocast: AbstractContextManager[Any]
    ) -> dict[str, Any]:
        return evaluate_classifier(
            model, batches, class_names=self.classes, num_dataset_classes=len(self.dataset_classes),
            background=self.background, ctx=ctx, autocast=autocast,
        )


def make_task(config: TrainConfig) -> Task:
    """The task `config` asks for (`config.resolved_method`); `bind` it to the training split."""
    method = config.resolved_method
    if method == "affinity":
        from wsdeploy.training.tags.tasks import AffinityTask  # here: tags.tasks builds on this module

        return AffinityTask(config)
    if method == "classifier" and config.contrast.weight > 0:
        from wsdeploy.training.tags.tasks import ContrastClassifierTask

        return ContrastClassifierTask(config)
    if method == "classifier":
        return ClassifierTask(config)
    if method == "sec":
        return SECTask(config)
    return SegmentTask(config)
