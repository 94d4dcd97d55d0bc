"""Structured fuzz targets: hypothesis strategies that build almost-valid inputs, and their checks.

    image_arrays        read_image on numpy arrays of any dtype/shape, PIL images of any mode, other types
    model_card          ModelCard.from_dict on cards with wrong types, huge strings, NaNs, extra keys
    checkpoint_payload  read_checkpoint / load_checkpoint on torch-saved payloads of every shape
    dataset_folder      SegmentationDataset on generated folders: classes.txt, tags.txt, splits, masks
                        of another size or with out-of-range labels
    yaml_config         training's load_config on generated YAML files
"""
from __future__ import annotations

import io
import json
import math
import shutil
from itertools import count
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.fuzz.harness import Target
from tests.fuzz.targets_bytes import FUZZ_MAX_PIXELS, _scratch, _tiny_card

__all__ = ["STRATEGIES", "STRUCTURED_TARGETS", "warm_inputs"]

_case_ids = count()

# Values of every JSON type, small and large: what a hostile card or config holds.
_text = st.one_of(st.text(max_size=12), st.text(alphabet="ab \n\t#\x00\u2028", max_size=8),
                  st.integers(0, 200_000).map(lambda n: "x" * n))
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10**30), 10**30),
                     st.floats(allow_nan=True, allow_infinity=True), _text)
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                       st.dictionaries(_text, inner, max_size=4)), max_leaves=12)


# -- image_arrays ------------------------------------------------------------------------------
_dtypes = st.sampled_from([np.uint8, np.uint16, np.int8, np.int64, np.float32, np.float64, np.bool_, np.complex64])
_arrays = hnp.arrays(_dtypes, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
_uint8_images = hnp.arrays(np.uint8, st.tuples(st.integers(0, 6), st.integers(0, 6), st.sampled_from([1, 2, 3, 4, 5])))
_pil_modes = st.sampled_from(["1", "L", "P", "RGB", "RGBA", "CMYK", "I", "F", "LA", "I;16", "YCbCr", "HSV", "PA", "La"])


@st.composite
def _pil_images(draw: Any) -> Any:
    from PIL import Image

    mode = draw(_pil_modes)
    size = (draw(st.integers(0, 5)), draw(st.integers(0, 5)))
    return Image.new(mode, size)


_image_inputs = st.one_of(_uint8_images, _arrays, _pil_images(), _scalars, st.lists(st.integers(0, 255), max_size=4),
                          st.binary(max_size=16))


def _read_array(value: Any) -> Any:
    from wsdeploy.data.image_io import read_image

    return read_image(value, max_pixels=FUZZ_MAX_PIXELS)


def _check_array(value: Any, image: np.ndarray) -> None:
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.flags.c_contiguous and image.shape[0] * image.shape[1] > 0
    if isinstance(value, np.ndarray):
        arr = value[..., 0] if value.ndim == 3 and value.shape[2] == 1 else value
        expected = np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr[:, :, :3]
        np.testing.assert_array_equal(image, expected)
    elif type(value).__module__.startswith("PIL."):
        assert image.shape[:2] == (value.size[1], value.size[0]), f"{value.mode} {value.size} -> {image.shape}"


# -- model_card --------------------------------------------------------------------------------
_CARD_FIELDS = ("arch", "classes", "arch_kwargs", "palette", "mean", "std", "input_size", "supervision", "losses",
                "evaluation", "training", "versions", "created", "format_version")


@st.composite
def _cards(draw: Any) -> Any:
    if draw(st.integers(0, 19)) == 0:
        return draw(_json)
    card = dict(_tiny_card())
    for name in draw(st.lists(st.sampled_from(_CARD_FIELDS), max_size=3, unique=True)):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            card.pop(name)
        elif choice == 1 and name in ("classes", "mean", "std", "palette", "input_size"):
            card[name] = draw(st.lists(_scalars, max_size=6))
        else:
            card[name] = draw(_json)
    if draw(st.booleans()) and draw(st.booleans()):
        card[draw(_text)] = draw(_json)
    return card


def _card_from_dict(data: Any) -> Any:
    from wsdeploy.checkpoint import ModelCard

    return ModelCard.from_dict(data)


def _is_finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_card(data: Any, card: Any) -> None:
    from wsdeploy.checkpoint import SUPERVISION_KINDS, ModelCard

    assert isinstance(card, ModelCard)
    assert isinstance(card.arch, str) and card.arch
    assert isinstance(card.classes, list) and card.classes and all(isinstance(c, str) for c in card.classes), (
        f"classes {str(card.classes)[:80]}"
    )
    assert isinstance(card.arch_kwargs, dict) and all(isinstance(k, str) for k in card.arch_kwargs), "arch_kwargs"
    assert card.palette is None or (
        isinstance(card.palette, list)
        and all(isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                for c in card.palette)
    ), f"palette {str(card.palette)[:80]}"
    for name in ("mean", "std"):
        value = getattr(card, name)
        assert isinstance(value, list) and len(value) == 3 and all(_is_finite(v) for v in value), f"{name} {value}"
    assert all(v > 0 for v in card.std)
    assert card.input_size is None or (
        isinstance(card.input_size, list) and len(card.input_size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in card.input_size)
    ), f"input_size {card.input_size}"
    assert card.supervision in SUPERVISION_KINDS
    assert isinstance(card.losses, dict) and all(isinstance(k, str) and _is_finite(v) for k, v in card.losses.items()), (
        f"losses {str(card.losses)[:80]}"
    )
    for name in ("evaluation", "training", "versions"):
        assert isinstance(getattr(card, name), dict), f"{name} {str(getattr(card, name))[:80]}"
    assert isinstance(card.created, str), f"created {card.created!r}"
    assert isinstance(card.format_version, int) and not isinstance(card.format_version, bool)
    text = json.dumps(card.to_dict())  # exports store it as JSON
    again = json.dumps(ModelCard.from_dict(json.loads(text)).to_dict())
    assert again == text, "roundtrip: the card does not survive a JSON round trip"


# -- checkpoint_payload ------------------------------------------------------------------------
_tensors = st.one_of(
    hnp.arrays(st.sampled_from([np.float32, np.int64, np.uint8, np.float16]),
               hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)).map(lambda a: __import__("torch").from_numpy(a.copy())),
)


@st.composite
def _payloads(draw: Any) -> Any:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.one_of(_json, st.dictionaries(_text, _tensors, max_size=3)))
    payload: dict[str, Any] = {"format": "wsdeploy-checkpoint" if kind > 1 else draw(_json), "card": draw(_cards())}
    state = draw(st.one_of(st.dictionaries(st.sampled_from(["conv1.weight", "fc.bias", "bn1.running_var", ""]),
                                           _tensors, max_size=3),
                           st.dictionaries(_text, st.one_of(_tensors, _scalars), max_size=3), _json))
    if draw(st.booleans()):
        payload["state_dict"] = state
    if draw(st.integers(0, 4)) == 0:
        payload[draw(_text)] = draw(_json)
    return payload


def _load_payload(payload: Any) -> Any:
    import torch

    from wsdeploy.checkpoint import load_checkpoint

    buf = io.BytesIO()
    torch.save(payload, buf)
    path = _scratch() / "payload.pt"
    path.write_bytes(buf.getvalue())
    return load_checkpoint(path)


def _check_loaded(payload: Any, result: Any) -> None:
    import torch

    model, card = result
    assert isinstance(model, torch.nn.Module)
    _check_card(None, card)


# -- dataset_folder ----------------------------------------------------------------------------
_names = st.one_of(st.sampled_from(["bg", "cat", "dog", "bg", "# x", " cat ", "", "a b"]),
                   st.text(alphabet="abc #\t\u00e9\u2028\x85\x0c", max_size=5))


@st.composite
def _datasets(draw: Any) -> dict[str, Any]:
    ids = draw(st.lists(st.sampled_from(["a", "b", "c", "a.b", "x y", "../a", "d"]), min_size=0, max_size=4, unique=True))
    images = {i: (draw(st.integers(1, 5)), draw(st.integers(1, 5))) for i in ids}
    masks = {}
    for i, (h, w) in images.items():
        if draw(st.integers(0, 3)):
            mh, mw = (h, w) if draw(st.integers(0, 3)) else (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
            masks[i] = draw(hnp.arrays(np.uint8, (mh, mw), elements=st.sampled_from([0, 1, 2, 3, 7, 254, 255])))
    return {
        "classes": draw(st.lists(_names, max_size=4)),
        "images": images,
        "masks": masks,
        "mask_folder": draw(st.sampled_from(["masks", "scribbles"])),
        "tags": draw(st.one_of(st.none(), st.lists(st.lists(_names, min_size=1, max_size=3).map(" ".join), max_size=4))),
        "split": draw(st.lists(st.sampled_from(ids + ["zz", "images/a.jpg", "a.png", "#c", "  "]), max_size=5)),
        "labels": draw(st.sampled_from(["masks", "scribbles", None])),
        "tags_bytes": draw(st.one_of(st.none(), st.binary(max_size=12))),
    }


def _read_dataset(spec: dict[str, Any]) -> Any:
    from wsdeploy.data.datasets import SegmentationDataset
    from wsdeploy.data.image_io import write_image, write_label_png

    root = _scratch() / f"ds{next(_case_ids)}"
    try:
        (root / "images").mkdir(parents=True)
        (root / "splits").mkdir()
        (root / spec["mask_folder"]).mkdir()
        (root / "classes.txt").write_text("\n".join(spec["classes"]), encoding="utf-8")
        for image_id, (h, w) in spec["images"].items():
            if "/" not in image_id:
                write_image(root / "images" / f"{image_id}.png", np.full((h, w, 3), 9, np.uint8))
        for image_id, mask in spec["masks"].items():
            if "/" not in image_id:
                write_label_png(root / spec["mask_folder"] / f"{image_id}.png", mask)
        if spec["tags"] is not None:
            (root / "tags.txt").write_text("\n".join(spec["tags"]), encoding="utf-8")
        if spec["tags_bytes"] is not None:
            (root / "tags.txt").write_bytes(spec["tags_bytes"])
        (root / "splits" / "train.txt").write_text("\n".join(spec["split"]), encoding="utf-8")
        dataset = SegmentationDataset(root, split="train", labels=spec["labels"])
        return dataset, [dataset[i] for i in range(len(dataset))]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _check_dataset(spec: dict[str, Any], result: Any) -> None:
    dataset, items = result
    k = len(dataset.classes)
    assert k >= 1 and len(set(dataset.classes)) == k and all(c and c == c.strip() for c in dataset.classes), (
        f"classes {dataset.classes}"
    )
    assert len(items) == len(dataset.ids) >= 1
    for item in items:
        image, label = item["image"], item["label"]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        if spec["labels"] is None:
            assert label is None
        else:
            assert label.shape == image.shape[:2], f"label {label.shape} for image {image.shape}"
            bad = set(np.unique(label).tolist()) - set(range(k)) - {255}
            assert not bad, f"label values {sorted(bad)} with {k} classes"
        tags = item["tags"]
        assert tags is None or (list(tags) == sorted(set(tags)) and all(0 <= t < k for t in tags)), f"tags {tags}"


# -- yaml_config -------------------------------------------------------------------------------
@st.composite
def _yaml_texts(draw: Any) -> str:
    from wsdeploy.training.config import field_types

    fields = sorted(field_types())
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.text(max_size=40))
    if kind == 1:
        return draw(st.sampled_from(["[1, 2", "a: b: c", "{", "&a [*a]", "!!python/object:os.system {}", "- 1", "",
                                     "data: !!binary aGk=", "a: &x 1\nb: *x", "? [1]\n: 2", "data: x\ndata: y"]))
    config: dict[Any, Any] = {"data": draw(st.one_of(st.just("data/x"), _scalars))} if draw(st.integers(0, 4)) else {}
    for name in draw(st.lists(st.sampled_from(fields), max_size=4, unique=True)):
        config[name] = draw(_json)
    if draw(st.integers(0, 3)) == 0:
        config[draw(st.one_of(_text, st.integers()))] = draw(_json)
    import yaml

    return yaml.safe_dump(config, allow_unicode=True)


def _load_yaml(text: str) -> Any:
    from wsdeploy.training.config import load_config

    path = _scratch() / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return load_config(path)


def _check_config(text: str, config: Any) -> None:
    from wsdeploy.training.config import TrainConfig, config_from_dict, config_to_dict

    assert isinstance(config, TrainConfig)
    assert config_from_dict(config_to_dict(config)) == config, "the config does not survive a round trip"


STRUCTURED_TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target("image_arrays", _read_array, (ValueError, TypeError), _check_array, kind="structured"),
        Target("model_card", _card_from_dict, (ValueError,), _check_card, kind="structured"),
        Target("checkpoint_payload", _load_payload, (ValueError,), _check_loaded, kind="structured"),
        Target("dataset_folder", _read_dataset, (ValueError,), _check_dataset, kind="structured"),
        Target("yaml_config", _load_yaml, (ValueError,), _check_config, kind="structured"),
    ]
}

def warm_inputs(name: str) -> list[Any]:
    """A valid input per target, run once before timing starts (first calls import torch, codecs...)."""
    card = _tiny_card()
    if name == "image_arrays":
        return [np.zeros((2, 3, 3), np.uint8)]
    if name == "model_card":
        return [card]
    if name == "checkpoint_payload":
        return [{"format": "wsdeploy-checkpoint", "card": card, "state_dict": {}}]
    if name == "dataset_folder":
        return [{"classes": ["bg", "a"], "images": {"a": (3, 4)}, "masks": {"a": np.zeros((3, 4), np.uint8)},
                 "mask_folder": "masks", "tags": None, "split": ["a"], "labels": "masks", "tags_bytes": None}]
    return ["data: x\nsteps: 3\n"]


STRATEGIES: dict[str, st.SearchStrategy] = {
    "image_arrays": _image_inputs,
    "model_card": _cards(),
    "checkpoint_payload": _payloads(),
    "dataset_folder": _datasets(),
    "yaml_config": _yaml_texts(),
}
