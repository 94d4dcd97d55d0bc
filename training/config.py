"""`TrainConfig`: every setting of a training run, as one dataclass.

Provenance: nanoGPT's `train.py` / `GPTConfig` (MIT): plain values with commented defaults and
no config language. A YAML file maps onto the fields key by key (`load_config`), and the CLI
makes one flag per field from the same dataclass (`wsdeploy.cli.train`), so the three stay in
step by construction. Each field's `metadata["help"]` is its documentation.

    config = TrainConfig(data="data/shapes", losses="pce,crf", steps=2000)
    config = load_config("run.yaml", overrides={"lr": 0.01})
"""
from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "AMP_MODES",
    "LOSS_NAMES",
    "METHODS",
    "OPTIMIZERS",
    "RESUMABLE_CHANGES",
    "SUPERVISIONS",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "field_types",
    "load_config",
]

SUPERVISIONS = ("full", "scribbles", "tags")
# how a run learns from its labels: "auto" is the only choice for full/scribbles; with tags,
# "classifier" trains the CAM classifier and "seeds-rloss" / "sec" train a segmenter on CAM seeds
METHODS = ("auto", "classifier", "seeds-rloss", "sec")
LOSS_NAMES = ("pce", "crf", "potts", "ncut", "entropy")
OPTIMIZERS = ("sgd", "adamw")
AMP_MODES = ("off", "bf16", "fp16")
# fields that may differ between a checkpoint's config and the config that resumes it; any
# other difference would make the resumed run a different run
RESUMABLE_CHANGES = (
    "steps", "out_dir", "checkpoint_every", "eval_every", "log_every", "workers", "device",
    "tensorboard", "progress",
)


def _f(default: Any, help: str) -> Any:  # noqa: A002 - the metadata key argparse shows
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Batch size is per process: the global batch of an update is
    `batch_size * grad_accum * world_size`. Steps count optimizer updates, not epochs."""

    # data
    data: str = dataclasses.field(metadata={"help": "dataset folder (wsdeploy folder layout or VOC2012)"})
    train_split: str = _f("train", "split trained on (splits/<name>.txt)")
    val_split: str = _f("val", "split evaluated on (needs masks); '' for no evaluation")
    supervision: str = _f(
        "scribbles", "labels trained on: 'scribbles' (partial), 'full' (masks) or 'tags' (image-level)"
    )
    method: str = _f(
        "auto",
        "with tags: 'classifier' (CAM classifier; the default for classifier_* models), "
        "'seeds-rloss' (pCE on --seeds + --losses) or 'sec' (seed/expand/constrain on --seeds)",
    )
    seeds: str | None = _f(
        None, "folder of seed PNGs (`wsdeploy cam --seeds-out`) for --method seeds-rloss / sec"
    )
    crop_size: int = _f(512, "square training crop, a multiple of the model's input multiple")
    scale_min: float = _f(0.5, "smallest random scale factor of the augmentation")
    scale_max: float = _f(2.0, "largest random scale factor of the augmentation")
    hflip: float = _f(0.5, "probability of a horizontal flip")
    workers: int = _f(2, "DataLoader worker processes per training process (0 = in-process)")
    # model
    model: str = _f("deeplabv3plus_resnet50", "architecture name (wsdeploy.models.list_models())")
    output_stride: int = _f(16, "backbone output stride: 8, 16 or 32")
    width: int = _f(64, "backbone base width: 64 = torchvision ResNet, 16/32 = slim CPU models")
    backbone_weights: str | None = _f(None, "torchvision ImageNet .pth for the backbone (width 64)")
    # losses: pce on the labelled pixels, plus weighted regularizers on all pixels
    losses: str = _f("pce", "comma list of pce, crf, potts, ncut, entropy (pce required)")
    crf_weight: float = _f(0.25, "weight of the dense-CRF loss (normalised to [0, 1]; ~ rloss's 2e-9)")
    crf_sigma_rgb: float = _f(15.0, "dense-CRF loss colour bandwidth (0..255 RGB units)")
    crf_sigma_xy: float = _f(100.0, "dense-CRF loss spatial bandwidth (pixels, full resolution)")
    crf_scale: float = _f(0.5, "resolution factor at which the dense-CRF loss is computed")
    potts_weight: float = _f(0.25, "weight of the grid Potts loss (normalised to [0, 1])")
    potts_sigma_rgb: float = _f(15.0, "grid Potts loss colour bandwidth (0..255 RGB units)")
    potts_neighbours: int = _f(4, "grid Potts neighbourhood: 4 or 8")
    ncut_weight: float = _f(0.1, "weight of the normalized-cut loss (0.05-0.1 suggested)")
    ncut_sigma_rgb: float = _f(15.0, "normalized-cut loss colour bandwidth (0..255 RGB units)")
    ncut_sigma_xy: float = _f(100.0, "normalized-cut loss spatial bandwidth (pixels)")
    ncut_scale: float = _f(0.5, "resolution factor at which the normalized-cut loss is computed")
    entropy_weight: float = _f(0.1, "weight of the entropy loss (0.1 or less suggested)")
    relaxation: str = _f("bilinear", "relaxation of the Potts losses (crf, potts): bilinear or quadratic")
    regularizers_from_step: int = _f(0, "two-phase schedule: pce only before this step")
    sec_seed_weight: float = _f(1.0, "SEC: weight of the seeding loss")
    sec_expand_weight: float = _f(1.0, "SEC: weight of the expansion loss (global weighted rank pooling)")
    sec_constrain_weight: float = _f(1.0, "SEC: weight of the constrain-to-boundary loss (KL to the dense CRF)")
    sec_fg_decay: float = _f(0.996, "SEC: rank-pooling decay of foreground classes")
    sec_bg_decay: float = _f(0.999, "SEC: rank-pooling decay of the background class")
    # optimisation
    optimizer: str = _f("sgd", "'sgd' (momentum) or 'adamw'")
    lr: float = _f(0.01, "peak learning rate (after warm-up)")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(1e-4, "weight decay on conv/linear weights (not norms, biases)")
    backbone_lr_scale: float = _f(1.0, "backbone lr = lr * this (0.1 = DeepLab's 10x head lr)")
    steps: int = _f(30000, "optimizer updates in total")
    warmup_steps: int = _f(0, "linear warm-up from lr/warmup_steps to lr over these steps")
    poly_power: float = _f(0.9, "poly decay after warm-up: lr * (1 - progress) ** power")
    batch_size: int = _f(8, "images per micro-batch per process")
    grad_accum: int = _f(1, "micro-batches accumulated per optimizer update")
    amp: str = _f("off", "mixed precision: 'off', 'bf16' (CUDA or CPU) or 'fp16' (CUDA, GradScaler)")
    sync_bn: bool = _f(True, "under DDP on CUDA, convert BatchNorm to SyncBatchNorm")
    seed: int = _f(0, "seed of weights, data order and augmentation")
    # output
    out_dir: str = _f("runs/train", "folder for model.pt, last.pt, train_log.jsonl, config.yaml")
    checkpoint_every: int = _f(1000, "write last.pt every N steps (0 = only at the end)")
    eval_every: int = _f(0, "evaluate on val_split every N steps (0 = only at the end)")
    log_every: int = _f(10, "write a train_log.jsonl entry every N steps")
    tensorboard: bool = _f(True, "also log to TensorBoard when tensorboard is installed")
    progress: bool = _f(True, "show a progress bar (rank 0)")
    device: str = _f("auto", "'auto' (CUDA if present), 'cpu' or 'cuda'")

    def __post_init__(self) -> None:
        _check_choice("supervision", self.supervision, SUPERVISIONS)
        _check_choice("method", self.method, METHODS)
        self._check_method()
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("amp", self.amp, AMP_MODES)
        if not self.data:
            raise ValueError("data must name a dataset folder, got ''")
        names = self.loss_names
        unknown = [n for n in names if n not in LOSS_NAMES]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(
                f"losses must be a comma list of distinct names from {list(LOSS_NAMES)}, "
                f"got {self.losses!r}"
            )
        if "pce" not in names:
            raise ValueError(
                f"losses must include 'pce' (the term on the labelled pixels), got {self.losses!r}"
            )
        for name in names:
            if name != "pce" and not getattr(self, f"{name}_weight") > 0:
                raise ValueError(
                    f"{name}_weight must be > 0 when {name!r} is in losses, "
                    f"got {getattr(self, f'{name}_weight')!r}"
                )
        positive = ("crop_size", "steps", "batch_size", "grad_accum", "log_every", "output_stride", "width")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        non_negative = (
            "workers", "warmup_steps", "checkpoint_every", "eval_every", "regularizers_from_step",
            "weight_decay", "momentum", "seed",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"warmup_steps must be < steps ({self.steps}), got {self.warmup_steps!r}"
            )
        if not self.lr > 0 or not self.backbone_lr_scale >= 0 or not self.poly_power >= 0:
            raise ValueError(
                "need lr > 0, backbone_lr_scale >= 0, poly_power >= 0; got "
                f"{self.lr!r}, {self.backbone_lr_scale!r}, {self.poly_power!r}"
            )
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(
                f"need 0 < scale_min <= scale_max, got ({self.scale_min!r}, {self.scale_max!r})"
            )
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"hflip must be a probability in [0, 1], got {self.hflip!r}")

    def _check_method(self) -> None:
        if self.supervision != "tags":
            if self.method != "auto" or self.seeds is not None:
                raise ValueError(
                    f"method and seeds are for supervision='tags'; got supervision="
                    f"{self.supervision!r} with method={self.method!r}, seeds={self.seeds!r}"
                )
            return
        method = self.resolved_method
        if method == "classifier":
            if not self.model.startswith("classifier_"):
                raise ValueError(
                    f"method 'classifier' trains a CAM classifier: choose a classifier_* model, "
                    f"got {self.model!r}"
                )
            if self.loss_names != ["pce"] or self.seeds is not None:
                raise ValueError(
                    "the classifier trains with the multi-label soft-margin loss on the tags: "
                    f"leave losses='pce' and seeds unset (got {self.losses!r}, {self.seeds!r})"
                )
            return
        if self.model.startswith("classifier_"):
            raise ValueError(f"method {method!r} trains a segmenter; {self.model!r} is a classifier")
        if not self.seeds:
            raise ValueError(
                f"method {method!r} trains on CAM seeds: pass seeds=DIR (written by "
                "`wsdeploy cam --seeds-out DIR`)"
            )
        if method == "sec" and self.loss_names != ["pce"]:
            raise ValueError(
                f"method 'sec' has its own losses (seed, expand, constrain; see sec_*_weight); "
                f"leave losses='pce', got {self.losses!r}"
            )
        for name in ("sec_fg_decay", "sec_bg_decay"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        for name in ("sec_seed_weight", "sec_expand_weight", "sec_constrain_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    @property
    def resolved_method(self) -> str:
        """'segment' for full/scribbles; with tags the method, 'auto' meaning 'classifier' for a
        classifier_* model.

        Raises:
            ValueError: tags with a segmentation model and method 'auto'.
        """
        if self.supervision != "tags":
            return "segment"
        if self.method != "auto":
            return self.method
        if self.model.startswith("classifier_"):
            return "classifier"
        raise ValueError(
            f"supervision='tags' with the segmentation model {self.model!r}: choose "
            "method='seeds-rloss' or 'sec' and pass seeds=DIR (or train a classifier_* model first)"
        )

    @property
    def loss_names(self) -> list[str]:
        """`losses` split on commas, e.g. ["pce", "crf"]."""
        return [n.strip() for n in self.losses.split(",") if n.strip()]

    @property
    def loss_weights(self) -> dict[str, float]:
        """Loss name -> weight (what the model card records): pce first with weight 1, or the
        classifier's soft-margin loss, or SEC's three terms."""
        method = self.resolved_method
        if method == "classifier":
            return {"multilabel_soft_margin": 1.0}
        if method == "sec":
            return {n: float(getattr(self, f"sec_{n}_weight")) for n in ("seed", "expand", "constrain")}
        return {n: 1.0 if n == "pce" else float(getattr(self, f"{n}_weight")) for n in self.loss_names}


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def field_types() -> dict[str, Any]:
    """Field name -> resolved type (int, float, bool, str or `str | None`), in field order."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """Check `value` against the field's type; accept what YAML gives ("1e-4" is a string)."""
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    else:  # str | None
        if value is None or isinstance(value, str):
            return value
    expected = getattr(kind, "__name__", str(kind))
    raise ValueError(f"config field {name!r} expects {expected}, got {value!r}")


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """Build a `TrainConfig` from plain values (a YAML mapping, stored config, CLI flags).

    Raises:
        ValueError: unknown keys (the message lists the valid ones), a value of the wrong
            type, a missing `data`, or any value `TrainConfig` rejects.
    """
    if not isinstance(values, Mapping):
        raise ValueError(f"a config must be a mapping of field names to values, got {type(values).__name__}")
    types = field_types()
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; valid keys: {', '.join(types)}")
    if "data" not in values:
        raise ValueError("the config has no 'data' (the dataset folder); pass --data DIR")
    return TrainConfig(**{k: _coerce(k, types[k], v) for k, v in values.items()})


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as plain values (what checkpoints and config.yaml store)."""
    return dataclasses.asdict(config)


def load_config(
    path: str | os.PathLike | None = None, *, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Read a YAML file whose keys are `TrainConfig` fields, then apply `overrides`.

    Args:
        path: YAML file holding a mapping, or None to start from the defaults.
        overrides: field -> value, applied on top of the file (e.g. CLI flags).

    Raises:
        ValueError: unreadable file, not a mapping, unknown keys (listing the valid ones), bad
            values.
        ImportError: pyyaml is not installed (the `train` extra).
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            import yaml
        except ImportError as exc:
            raise ImportError('reading a YAML config needs pyyaml: pip install "wsdeploy[train]"') from exc
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file not found: {str(path)!r}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of config keys, got {type(loaded).__name__}")
        values.update(loaded)
    values.update(overrides or {})
    return config_from_dict(values)
