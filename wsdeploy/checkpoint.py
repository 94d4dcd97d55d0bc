"""Checkpoints: the weights and the model card that makes them self-describing.

File layout (a `torch.save` zip, read back with `torch.load(weights_only=True)`, so loading a
checkpoint never runs arbitrary pickled code)::

    {"format": "wsdeploy-checkpoint",
     "card": {...},                 # ModelCard.to_dict(): plain str/int/float/list/dict values
     "state_dict": {name: Tensor}}

A checkpoint is untrusted input. Every way it can be wrong (not a checkpoint, needs unpickling,
truncated, written by a newer format version, weights that do not fit the card) raises a
`ValueError` that says which, never a traceback from inside torch.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import math
import os
import pickle
import re
import reprlib
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from wsdeploy.atomic import atomic_path
from wsdeploy.data.image_io import IMAGENET_MEAN, IMAGENET_STD
from wsdeploy.environment import library_versions
from wsdeploy.settings import first_line

__all__ = [
    "CARD_FORMAT_VERSION", "ModelCard", "atomic_torch_save", "load_checkpoint", "load_untrusted", "read_checkpoint",
    "save_checkpoint",
]

CARD_FORMAT_VERSION = 1
_FORMAT_TAG = "wsdeploy-checkpoint"
SUPERVISION_KINDS = ("full", "scribbles", "tags", "none")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """Everything needed to rebuild, feed and interpret a model, stored beside its weights."""

    arch: str  # registry name, e.g. "deeplabv3plus_resnet18"
    classes: list[str]  # class names; index = class id
    arch_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)  # build_model kwargs
    palette: list[list[int]] | None = None  # (K, 3) RGB colours for overlays
    mean: list[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_STD))
    input_size: list[int] | None = None  # training crop (H, W)
    supervision: str = "none"  # "full" | "scribbles" | "tags" | "none"
    losses: dict[str, float] = dataclasses.field(default_factory=dict)  # loss name -> weight
    evaluation: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {"miou": 0.71}
    training: dict[str, Any] = dataclasses.field(default_factory=dict)  # data, steps, command
    versions: dict[str, str] = dataclasses.field(default_factory=library_versions)
    created: str = dataclasses.field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    format_version: int = CARD_FORMAT_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or not self.arch:
            raise ValueError(f"card.arch must be a model name, got {_short(self.arch)}")
        if not _is_seq(self.classes) or not self.classes or not all(isinstance(c, str) for c in self.classes):
            raise ValueError(f"card.classes must be a non-empty list of names, got {_short(self.classes)}")
        if self.palette is not None and not (
            _is_seq(self.palette) and len(self.palette) == len(self.classes)
            and all(_is_seq(c) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c) for c in self.palette)
        ):
            raise ValueError(
                f"card.palette must have one RGB triple (0..255) per class ({len(self.classes)}), "
                f"got {_short(self.palette)}"
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not _is_seq(value) or len(value) != 3 or not all(_is_number(v) for v in value):
                raise ValueError(f"card.{name} must have 3 finite numbers (RGB), got {_short(value)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"card.std must be positive, got {_short(self.std)}")
        if self.input_size is not None and not (
            _is_seq(self.input_size) and len(self.input_size) == 2 and all(_is_int(v) and v > 0 for v in self.input_size)
        ):
            raise ValueError(f"card.input_size must be None or (H, W) positive integers, got {_short(self.input_size)}")
        if not isinstance(self.supervision, str) or self.supervision not in SUPERVISION_KINDS:
            raise ValueError(
                f"card.supervision must be one of {SUPERVISION_KINDS}, got {_short(self.supervision)}"
            )
        if not isinstance(self.losses, dict) or not all(
            isinstance(k, str) and _is_number(v) for k, v in self.losses.items()
        ):
            raise ValueError(f"card.losses must map loss names to finite weights, got {_short(self.losses)}")
        for name in ("arch_kwargs", "evaluation", "training", "versions"):
            value = getattr(self, name)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ValueError(f"card.{name} must be a dict with string keys, got {_short(value)}")
        if not isinstance(self.created, str):
            raise ValueError(f"card.created must be a date string, got {_short(self.created)}")
        if not _is_int(self.format_version) or not 1 <= self.format_version <= CARD_FORMAT_VERSION:
            raise ValueError(
                f"card.format_version must be an integer in [1, {CARD_FORMAT_VERSION}], got {_short(self.format_version)}"
            )
        for name in ("classes", "palette", "mean", "std", "input_size"):  # tuples in, lists stored (as JSON reads them)
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, [list(v) if name == "palette" else v for v in value])
        try:
            json.dumps(self.to_dict())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the model card must hold plain JSON values only: {first_line(exc)}") from None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (what is stored in checkpoints and export metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "ModelCard":
        """Validate and build a card read from a file; raises ValueError on anything off."""
        if not isinstance(data, dict):
            raise ValueError(f"model card must be a dict, got {type(data).__name__}")
        version = data.get("format_version")
        if not _is_int(version):
            raise ValueError(f"model card has no integer format_version (got {_short(version)})")
        if version > CARD_FORMAT_VERSION:
            raise ValueError(
                f"model card format version {version} is newer than this wsdeploy supports "
                f"({CARD_FORMAT_VERSION}); upgrade wsdeploy"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"model card has unknown fields {_short(unknown)}; expected some of {sorted(names)}")
        missing = [n for n in ("arch", "classes") if n not in data]
        if missing:
            raise ValueError(f"model card is missing required fields {missing}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"invalid model card: {first_line(exc)}") from None


def _short(value: Any, limit: int = 120) -> str:
    """repr() of a value read from a file, cut to `limit` characters (errors quote, not dump)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = 6
_REPR.maxlevel = 3


def _is_seq(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, card: ModelCard) -> None:
    """Write weights + card atomically (temp file + rename), tensors moved to CPU."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": _FORMAT_TAG, "card": card.to_dict(), "state_dict": state}
    atomic_torch_save(payload, path)


class _FullWriter:
    """A file-like `write` that writes everything or raises, and remembers the OSError.

    torch.save turns a failed write into an opaque RuntimeError ("unexpected pos ..."); keeping the
    OSError lets `atomic_torch_save` say "disk full" instead.
    """

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        try:
            while view:
                view = view[self.raw.write(view):]
        except OSError as exc:
            self.error = exc
            raise
        return len(data) if isinstance(data, (bytes, bytearray)) else memoryview(data).nbytes

    def flush(self) -> None:
        pass


def atomic_torch_save(payload: Any, path: str | os.PathLike) -> None:
    """`torch.save(payload)` to `path` atomically: a failed write leaves the previous file intact.

    Raises:
        OSError: the disk is full, the folder is read-only, ... (the message names `path` and the
            cause; `torch.save`'s own RuntimeError would not).
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb", buffering=0) as raw:
            writer = _FullWriter(raw)
            try:
                torch.save(payload, writer)
            except RuntimeError:
                if writer.error is None:
                    raise
                raise writer.error from None


def load_untrusted(path: Path) -> Any:
    """`torch.load(weights_only=True)` on CPU, with every failure turned into a ValueError.

    Shared by deployable checkpoints and the trainer's `last.pt`: both are untrusted files. The
    messages say what the file is (not a checkpoint, truncated, foreign objects) and never
    suggest `weights_only=False`, which would run code from the file.
    """
    _check_container(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it references the Python object {found.group(1)})" if found else ""
        raise ValueError(
            f"{path}: refusing to load: the file holds Python objects{what}, not only tensors and plain "
            f"values; it was not written by wsdeploy, and loading it would need arbitrary unpickling, which can "
            f"run code from the file"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types on garbage (KeyError, EOFError...)
        raise ValueError(
            f"{path}: not a readable checkpoint (truncated or corrupt file?): {first_line(exc)}"
        ) from None


def _check_container(path: Path) -> None:
    """A torch.save file is a zip archive (older torch: a pickle stream); say which it is not."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        size = os.path.getsize(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    if head.startswith(b"PK\x03\x04"):
        try:
            complete = zipfile.is_zipfile(path)
        except zipfile.BadZipFile as exc:  # e.g. "zipfiles that span multiple disks are not supported"
            raise ValueError(f"{path}: not a readable checkpoint (corrupt zip archive: {first_line(exc)})") from None
        if not complete:  # no end-of-archive record: cut short
            raise ValueError(f"{path}: truncated checkpoint ({size} bytes; its zip archive has no end): "
                             "an interrupted download or copy? Fetch or copy the file again")
        return
    if head[:1] == b"\x80":  # a pickle stream (torch.save with _use_new_zipfile_serialization=False)
        return
    what = f"starts with {reprlib.repr(head)}" if size else "an empty file"
    raise ValueError(f"{path}: not a PyTorch checkpoint ({what}; a wsdeploy .pt is the zip archive "
                     "torch.save writes)")



def read_checkpoint(path: str | os.PathLike) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """Read and validate a checkpoint file without building the model.

    Returns:
        (card, state_dict) with CPU tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {str(path)!r}")
    payload = load_untrusted(path)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT_TAG:
        raise ValueError(
            f"{path}: not a wsdeploy checkpoint (no 'format': {_FORMAT_TAG!r} entry); "
            "a bare state_dict must be wrapped with save_checkpoint(path, model, card)"
        )
    card = ModelCard.from_dict(payload.get("card"))
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: checkpoint has no valid state_dict of tensors")
    return card, state


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, ModelCard]:
    """Rebuild the model described by the card and load its weights (CPU, eval mode).

    Raises:
        ValueError: any problem with the file, the card, or weights that do not fit the card.
    """
    from wsdeploy.models import build_model  # local: models import torch.nn layers only when used

    card, state = read_checkpoint(path)
    # The weights come from the file: never re-read the ImageNet .pth the model was trained from,
    # which the deploy machine may not have.
    kwargs = {k: v for k, v in card.arch_kwargs.items() if k != "backbone_weights"}
    try:
        # Shapes from a build on the meta device first: the card is untrusted, and {"width": 10**6}
        # or a million classes must be refused by the shape check, not by allocating the model.
        expected = _expected_state(card.arch, card.num_classes, json.dumps(kwargs, sort_keys=True))
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
        raise ValueError(f"{path}: the card's architecture cannot be built: {first_line(exc)}") from None
    _check_state_matches(expected, state, path)
    state = {k: v.to(expected[k][1]) for k, v in state.items()}
    with torch.device("meta"), _SkipRandomInit():
        model = build_model(card.arch, card.num_classes, **kwargs)
    model.load_state_dict(state, strict=True, assign=True)  # the file's tensors become the weights
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # a buffer outside the state_dict
        model = build_model(card.arch, card.num_classes, **kwargs)
        model.load_state_dict(state, strict=True)
    return model.eval(), card


@functools.lru_cache(maxsize=32)
def _expected_state(arch: str, num_classes: int, kwargs_json: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """{name: (shape, dtype)} of the model a card describes, built on the meta device (no memory)."""
    from wsdeploy.models import build_model

    with torch.device("meta"), _SkipRandomInit():
        model = build_model(arch, num_classes, **json.loads(kwargs_json))
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


class _SkipRandomInit(TorchFunctionMode):
    """Within a meta-device build, skip the random weight initialisers (the weights come from the
    file). On meta tensors `normal_` runs a Python decomposition whose first call imports
    torch._dynamo (~6 CPU s); a plain CPU build never pays that."""

    _SKIPPED = frozenset({"normal_", "uniform_", "kaiming_normal_", "kaiming_uniform_", "trunc_normal_",
                          "xavier_normal_", "xavier_uniform_", "orthogonal_"})

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in self._SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def _check_state_matches(
    expected: dict[str, tuple[tuple[int, ...], torch.dtype]], state: dict[str, torch.Tensor], path: Path | str
) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: card expects {expected[k][0]}, file has {tuple(state[k].shape)}"
        for k in expected
        if k in state and expected[k][0] != tuple(state[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {_short(unexpected[:3], 300)})")
        if wrong:
            parts.append(f"{len(wrong)} with wrong shapes (e.g. {_short(wrong[:3], 300)})")
        raise ValueError(f"{path}: weights do not match the model card: " + "; ".join(parts))
