"""`TrainConfig`: every setting of a training run, as one dataclass.

Provenance: nanoGPT's `train.py` / `GPTConfig` (MIT): plain values with commented defaults and
no config language. A YAML file maps onto the fields key by key (`load_config`), and the CLI
makes one flag per field from the same dataclass (`wsdeploy.cli.train`), so the three stay in
step by construction. Each loss's settings are a small dataclass of their own
(`wsdeploy.training.losses.settings`: `config.crf.weight`), given nested in YAML
(`crf: {weight: 1.0}`) or flat (`crf_weight: 1.0`, the flag `--crf-weight`). Each field's
`metadata["help"]` is its documentation.

Longer than the house's ~400 lines on purpose: every setting, its default, its help text and its
check live here once, and the flags, the YAML keys and the stored config all come from them.

    config = TrainConfig(data="data/synthetic", losses="pce,crf", steps=2000)
    config = load_config("run.yaml", overrides={"lr": 0.01})
"""
from __future__ import annotations

import dataclasses
import os
import reprlib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wsdeploy.training.losses.settings import SETTINGS_GROUPS as LOSS_SETTINGS_GROUPS
from wsdeploy.training.losses.settings import (
    REGULARIZERS,
    ADMSettings,
    DenseCRFSettings,
    EntropySettings,
    GridPottsSettings,
    NormalizedCutSettings,
    SECSettings,
)
from wsdeploy.training.tags.settings import (
    MAX_MOSAIC,
    TAGS_SETTINGS_GROUPS,
    AffinitySettings,
    ContrastSettings,
    RelabelSettings,
)
from wsdeploy.settings import setting

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
    "flat_fields",
    "load_config",
]

SUPERVISIONS = ("full", "scribbles", "tags")
# how a run learns from its labels: "auto" is the only choice for full/scribbles; with tags,
# "classifier" trains the CAM classifier and "seeds-rloss" / "sec" train a segmenter on CAM seeds
# ("affinity" trains the affinity net of the random walk on a frozen classifier, from seeds)
METHODS = ("auto", "classifier", "seeds-rloss", "sec", "affinity")
SETTINGS_GROUPS: dict[str, type] = {**LOSS_SETTINGS_GROUPS, **TAGS_SETTINGS_GROUPS}
LOSS_NAMES = ("pce", *REGULARIZERS)  # pce, crf, potts, ncut, entropy
OPTIMIZERS = ("sgd", "adamw")
AMP_MODES = ("off", "bf16", "fp16")
# fields that may differ between a checkpoint's config and the config that resumes it; any
# other difference would make the resumed run a different run
RESUMABLE_CHANGES = (
    "steps", "out_dir", "checkpoint_every", "eval_every", "log_every", "workers", "device",
    "tensorboard", "progress",
)


def _group(kind: type, help: str) -> Any:  # noqa: A002
    return dataclasses.field(default_factory=kind, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Batch size is per process: the global batch of an update is
    `batch_size * grad_accum * world_size`. Steps count optimizer updates, not epochs."""

    # data
    data: str = dataclasses.field(metadata={"help": "dataset folder (wsdeploy folder layout or VOC2012)"})
    train_split: str = setting("train", "split trained on (splits/<name>.txt)")
    val_split: str = setting("val", "split evaluated on (needs masks); '' for no evaluation")
    supervision: str = setting(
        "scribbles", "labels trained on: 'scribbles' (partial), 'full' (masks) or 'tags' (image-level)"
    )
    method: str = setting(
        "auto",
        "with tags: 'classifier' (CAM classifier; the default for classifier_* models), "
        "'seeds-rloss' (pCE on --seeds + --losses), 'sec' (seed/expand/constrain on --seeds) or "
        "'affinity' (the random walk's affinity net on --affinity-classifier, from --seeds)",
    )
    seeds: str | None = setting(
        None, "folder of seed PNGs (`wsdeploy cam --seeds-out`) for --method seeds-rloss / sec"
    )
    crop_size: int = setting(512, "square training crop, a multiple of the model's input multiple")
    scale_min: float = setting(0.5, "smallest random scale factor of the augmentation")
    scale_max: float = setting(2.0, "largest random scale factor of the augmentation")
    hflip: float = setting(0.5, "probability of a horizontal flip")
    vflip: float = setting(0.0, "probability of a vertical flip (0: photos have an up and a down)")
    mosaic: int = setting(
        1,
        "classifier training on tags: tile k x k augmented crops into one input, each tile scored "
        "on its own CAM cells with its own tags, so its context comes from other images (1 = off)",
    )
    workers: int = setting(2, "DataLoader worker processes per training process (0 = in-process)")
    # model
    model: str = setting("deeplabv3plus_resnet50", "architecture name (wsdeploy.models.list_models())")
    output_stride: int = setting(16, "backbone output stride: 8, 16 or 32")
    width: int = setting(64, "backbone base width: 64 = torchvision ResNet, 16/32 = slim CPU models")
    backbone_weights: str | None = setting(None, "torchvision ImageNet .pth for the backbone (width 64)")
    # losses: pce on the labelled pixels, plus weighted regularizers on all pixels
    losses: str = setting("pce", "comma list of pce, crf, potts, ncut, entropy, adm (pce required)")
    crf: DenseCRFSettings = _group(DenseCRFSettings, "the dense-CRF loss (flags --crf-*)")
    potts: GridPottsSettings = _group(GridPottsSettings, "the grid Potts loss (flags --potts-*)")
    ncut: NormalizedCutSettings = _group(NormalizedCutSettings, "the normalized-cut loss (flags --ncut-*)")
    entropy: EntropySettings = _group(EntropySettings, "the entropy loss (flag --entropy-weight)")
    adm: ADMSettings = _group(ADMSettings, "ADM proposals: cross-entropy to mean-field proposals (flags --adm-*)")
    relaxation: str = setting("bilinear", "relaxation of the Potts losses (crf, potts): bilinear or quadratic")
    regularizers_from_step: int = setting(
        -1,
        "two-phase schedule: pce alone before this step; -1 = a third of steps (0 = from the start). "
        "The sweep measured pce+crf 49.9 val mIoU with the regularizer on from step 1000 of 3000, "
        "47.4 from step 0 (benchmarks/results/scribble_sweep.json)",
    )
    sec: SECSettings = _group(SECSettings, "SEC's losses, for method='sec' (flags --sec-*)")
    affinity: AffinitySettings = _group(AffinitySettings, "method='affinity': the affinity net (flags --affinity-*)")
    contrast: ContrastSettings = _group(ContrastSettings, "regional contrast in classifier training (flags --contrast-*)")
    rounds: int = setting(1, "method seeds-rloss: self-training rounds (train, re-label the train split, train again)")
    relabel: RelabelSettings = _group(RelabelSettings, "how --rounds re-labels between rounds (flags --relabel-*)")
    # optimisation
    optimizer: str = setting("sgd", "'sgd' (momentum) or 'adamw'")
    lr: float = setting(0.01, "peak learning rate (after warm-up)")
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(1e-4, "weight decay on conv/linear weights (not norms, biases)")
    backbone_lr_scale: float = setting(1.0, "backbone lr = lr * this (0.1 = DeepLab's 10x head lr)")
    steps: int = setting(30000, "optimizer updates in total")
    warmup_steps: int = setting(0, "linear warm-up from lr/warmup_steps to lr over these steps")
    poly_power: float = setting(0.9, "poly decay after warm-up: lr * (1 - progress) ** power")
    batch_size: int = setting(8, "images per micro-batch per process")
    grad_accum: int = setting(1, "micro-batches accumulated per optimizer update")
    amp: str = setting("off", "mixed precision: 'off', 'bf16' (CUDA or CPU) or 'fp16' (CUDA, GradScaler)")
    sync_bn: bool = setting(True, "under DDP on CUDA, convert BatchNorm to SyncBatchNorm")
    seed: int = setting(0, "seed of weights, data order and augmentation")
    # output
    out_dir: str = setting("runs/train", "folder for model.pt, last.pt, train_log.jsonl, config.yaml")
    checkpoint_every: int = setting(1000, "write last.pt every N steps (0 = only at the end)")
    eval_every: int = setting(0, "evaluate on val_split every N steps (0 = only at the end)")
    log_every: int = setting(10, "write a train_log.jsonl entry every N steps")
    tensorboard: bool = setting(True, "also log to TensorBoard when tensorboard is installed")
    progress: bool = setting(True, "show a progress bar (rank 0)")
    device: str = setting("auto", "'auto' (CUDA if present), 'cpu' or 'cuda'")

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
            if name != "pce" and not getattr(self, name).weight > 0:
                raise ValueError(
                    f"{name}_weight must be > 0 when {name!r} is in losses, "
                    f"got {getattr(self, name).weight!r}"
                )
        positive = ("crop_size", "steps", "batch_size", "grad_accum", "log_every", "output_stride", "width")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        non_negative = (
            "workers", "warmup_steps", "checkpoint_every", "eval_every",
            "weight_decay", "momentum", "seed",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.regularizers_from_step < -1:
            raise ValueError(f"regularizers_from_step must be >= 0, or -1 for a third of steps; "
                             f"got {self.regularizers_from_step!r}")
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
        if not 0.0 <= self.vflip <= 1.0:
            raise ValueError(f"vflip must be a probability in [0, 1], got {self.vflip!r}")

    def _check_method(self) -> None:
        self.contrast.check()
        self.relabel.check()
        if self.rounds < 1 or (self.rounds > 1 and (self.supervision != "tags" or self.method != "seeds-rloss")):
            raise ValueError(f"rounds must be >= 1, and > 1 only with supervision='tags', method='seeds-rloss'; "
                             f"got rounds={self.rounds!r}")
        if isinstance(self.mosaic, bool) or not isinstance(self.mosaic, int) or not 1 <= self.mosaic <= MAX_MOSAIC:
            raise ValueError(f"mosaic must be an int in [1, {MAX_MOSAIC}], got {self.mosaic!r}")
        if self.mosaic > 1 and not (self.supervision == "tags" and self.model.startswith("classifier_")):
            raise ValueError("mosaic > 1 is an option of classifier training (supervision='tags', a classifier_* model)")
        if self.contrast.weight > 0 and not (self.supervision == "tags" and self.model.startswith("classifier_")):
            raise ValueError("contrast_weight > 0 is an option of classifier training (supervision='tags', a classifier_* model)")
        if self.supervision != "tags":
            if self.method != "auto" or self.seeds is not None:
                raise ValueError(
                    f"method and seeds are for supervision='tags'; got supervision="
                    f"{self.supervision!r} with method={self.method!r}, seeds={self.seeds!r}"
                )
            return
        method = self.resolved_method
        if method == "affinity":
            self.affinity.check()
            if not self.seeds or self.loss_names != ["pce"]:
                raise ValueError("method 'affinity' learns from seeds=DIR (pairs of confident seeds) with its own loss; "
                                 f"pass seeds and leave losses='pce' (got {self.seeds!r}, {self.losses!r})")
            return
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
        for name in ("fg_decay", "bg_decay"):
            if not 0.0 < getattr(self.sec, name) <= 1.0:
                raise ValueError(f"sec_{name} must be in (0, 1], got {getattr(self.sec, name)!r}")
        for name in ("seed_weight", "expand_weight", "constrain_weight"):
            if getattr(self.sec, name) < 0:
                raise ValueError(f"sec_{name} must be >= 0, got {getattr(self.sec, name)!r}")

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
    def regularizers_start(self) -> int:
        """The step from which the regularized losses are on (`regularizers_from_step`; -1: steps // 3)."""
        return self.steps // 3 if self.regularizers_from_step < 0 else self.regularizers_from_step

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
            return {"multilabel_soft_margin": 1.0, **({"region_contrast": self.contrast.weight} if self.contrast.weight else {})}
        if method == "affinity":
            return {"affinity": 1.0}
        if method == "sec":
            return {n: float(getattr(self.sec, f"{n}_weight")) for n in ("seed", "expand", "constrain")}
        return {n: 1.0 if n == "pce" else float(getattr(self, n).weight) for n in self.loss_names}


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {_short(value)}")


def field_types() -> dict[str, Any]:
    """Flat field name -> resolved type (int, float, bool, str or `str | None`), in field order.

    A settings group's fields are flattened as `<group>_<field>` (`crf_weight`, `sec_fg_decay`):
    the names of the CLI flags and of a flat YAML config.
    """
    return {name: kind for name, kind, _ in flat_fields()}


def flat_fields() -> list[tuple[str, Any, dataclasses.Field]]:
    """(flat name, resolved type, dataclass field) of every setting, groups flattened."""
    out = []
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        if field.name in SETTINGS_GROUPS:
            group = SETTINGS_GROUPS[field.name]
            sub_hints = typing.get_type_hints(group)
            out += [(f"{field.name}_{sub.name}", sub_hints[sub.name], sub) for sub in dataclasses.fields(group)]
        else:
            out.append((field.name, hints[field.name], field))
    return out


def _flatten(values: Mapping[str, Any]) -> dict[str, Any]:
    """Nested groups (`crf: {weight: 1.0}`) to flat keys (`crf_weight`); flat keys win."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in SETTINGS_GROUPS and isinstance(value, Mapping):
            valid = [f.name for f in dataclasses.fields(SETTINGS_GROUPS[key])]
            unknown = sorted(set(value) - set(valid))
            if unknown:
                raise ValueError(f"unknown {key} setting(s) {_short(unknown)}; valid: {', '.join(valid)}")
            for sub, v in value.items():
                flat.setdefault(f"{key}_{sub}", v)
        elif key in SETTINGS_GROUPS:
            raise ValueError(f"config field {key!r} expects a mapping of its settings, got {_short(value)}")
    for key, value in values.items():
        if key not in SETTINGS_GROUPS:
            flat[key] = value
    return flat


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
    raise ValueError(f"config field {name!r} expects {expected}, got {_short(value)}")


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """Build a `TrainConfig` from plain values (a YAML mapping, stored config, CLI flags).

    Raises:
        ValueError: unknown keys (the message lists the valid ones), a value of the wrong
            type, a missing `data`, or any value `TrainConfig` rejects.
    """
    if not isinstance(values, Mapping):
        raise ValueError(f"a config must be a mapping of field names to values, got {type(values).__name__}")
    values = _flatten(values)
    types = field_types()
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ValueError(f"unknown config key(s) {_short(unknown)}; valid keys: {', '.join(types)}")
    if "data" not in values:
        raise ValueError("the config has no 'data' (the dataset folder); pass --data DIR")
    coerced = {k: _coerce(k, types[k], v) for k, v in values.items()}
    top = {k: v for k, v in coerced.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
    for group, kind in SETTINGS_GROUPS.items():
        prefix = group + "_"
        sub = {k[len(prefix):]: v for k, v in coerced.items() if k.startswith(prefix) and k not in top}
        top[group] = kind(**sub)
    return TrainConfig(**top)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as plain values (what checkpoints and config.yaml store), settings groups
    nested (`{"crf": {"weight": 0.25, ...}}`); `config_from_dict` reads it back, and reads the
    flat form of earlier versions too."""
    return dataclasses.asdict(config)


def load_config(
    path: str | os.PathLike | None = None, *, overrides: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Read a YAML file whose keys are `TrainConfig` fields, then apply `overrides`.

    Args:
        path: YAML file holding a mapping, or None to start from the defaults.
        overrides: field -> value, applied on top of the file (e.g. CLI flags).
        base: field -> value under the file, e.g. `wsdeploy.training.presets.preset("cpu-small")`.

    Raises:
        ValueError: unreadable file, not a mapping, unknown keys (listing the valid ones), bad
            values.
        ImportError: pyyaml is not installed (the `train` extra).
    """
    values: dict[str, Any] = dict(base or {})
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
            raise ValueError(f"{path}: not valid YAML: {_short_yaml_error(exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of config keys, got {type(loaded).__name__}")
        values.update(loaded)
    values.update(overrides or {})
    return config_from_dict(values)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = 6
_REPR.maxlevel = 3


def _short(value: Any) -> str:
    """repr() of a value from a config file, bounded: an error message quotes, it does not dump."""
    return _REPR.repr(value)


def _short_yaml_error(exc: Exception) -> str:
    """PyYAML's multi-line message as one line: the problem and where it is."""
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())[:300]
