"""Tests for wsdeploy.training.transforms: label alignment, padding 254, scribbles, determinism."""
import sys

import cv2
import numpy as np
import pytest

from wsdeploy.training import transforms as T
from wsdeploy.data.labels import IGNORE_LABEL, PAD_LABEL
from wsdeploy.training.transforms import train_transform, val_transform

# The image's colour encodes the label: after any geometric transform, decoding the colour of a
# pixel away from region edges must give back the pixel's label.
PALETTE = {
    0: (255, 0, 0),
    1: (0, 255, 0),
    2: (0, 0, 255),
    3: (255, 255, 0),
    IGNORE_LABEL: (255, 0, 255),
}
FILL = (0, 0, 0)  # not a palette colour, and no blend of palette colours is black


def coded_pair(seed: int, h: int = 64, w: int = 96, cell: int = 16):
    rng = np.random.default_rng(seed)
    coarse = rng.choice(list(PALETTE), size=(-(-h // cell), -(-w // cell))).astype(np.uint8)
    label = np.kron(coarse, np.ones((cell, cell), np.uint8))[:h, :w]  # (h, w) blocks
    image = np.zeros((h, w, 3), np.uint8)
    for value, colour in PALETTE.items():
        image[label == value] = colour
    return image, label


def decode(image: np.ndarray) -> np.ndarray:
    values = np.array(list(PALETTE), np.int64)
    colours = np.array(list(PALETTE.values()), np.int64)  # (P, 3)
    dist = ((image[:, :, None, :].astype(np.int64) - colours) ** 2).sum(-1)  # (H, W, P)
    return values[dist.argmin(-1)]


def interior(label: np.ndarray, radius: int = 1) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood holds a single label value."""
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    lo = cv2.erode(label, k, borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(label, k, borderType=cv2.BORDER_REPLICATE)
    inner = lo == hi
    # the crop edge hides what lies beyond it: leave a margin there too
    inner[:radius] = inner[-radius:] = False
    inner[:, :radius] = inner[:, -radius:] = False
    return inner


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_labels_aligned(seed):
    image, label = coded_pair(seed)
    t = train_transform(crop_size=(56, 72), scale_range=(0.5, 2.0), fill=FILL, seed=seed)
    for _ in range(5):
        out = t({"image": image, "label": label, "id": "x", "tags": [1]})
        img, lab = out["image"], out["label"]
        assert img.shape == (56, 72, 3) and img.dtype == np.uint8
        assert lab.shape == (56, 72) and lab.dtype == np.uint8
        assert out["id"] == "x" and out["tags"] == [1]  # other keys pass through
        # nearest neighbour: only input values, plus padding
        assert set(np.unique(lab).tolist()) <= set(PALETTE) | {PAD_LABEL}
        # padding: 254 exactly where the image is the fill colour
        is_fill = np.all(img == FILL, axis=-1)
        np.testing.assert_array_equal(lab == PAD_LABEL, is_fill)
        # alignment one pixel away from region edges (bilinear blends colours there); a
        # one-pixel shift between image and label fails this
        inner = interior(lab) & (lab != PAD_LABEL)
        assert inner.sum() > 200
        np.testing.assert_array_equal(decode(img)[inner], lab[inner])
        # and nearly everywhere
        labelled = lab != PAD_LABEL
        assert (decode(img)[labelled] == lab[labelled]).mean() > 0.9


def test_padding_is_254_in_the_label():
    image, label = coded_pair(0, h=16, w=24)
    t = train_transform(crop_size=40, scale_range=(1.0, 1.0), hflip=0.0, fill=FILL, seed=0)
    out = t({"image": image, "label": label})
    assert out["label"].shape == (40, 40)
    assert (out["label"] == PAD_LABEL).sum() == 40 * 40 - 16 * 24
    assert np.all(out["image"][out["label"] == PAD_LABEL] == FILL)
    # no scale, no flip: the image sits unchanged inside the padding (centred)
    top, left = (40 - 16) // 2, (40 - 24) // 2
    np.testing.assert_array_equal(out["label"][top : top + 16, left : left + 24], label)
    np.testing.assert_array_equal(out["image"][top : top + 16, left : left + 24], image)


def test_vflip_turns_the_pair_upside_down_and_zero_changes_nothing():
    image, label = coded_pair(0, h=16, w=24)
    item = {"image": image, "label": label}
    flipped = train_transform(crop_size=(16, 24), scale_range=(1.0, 1.0), hflip=0.0, vflip=1.0, seed=0)(item)
    np.testing.assert_array_equal(flipped["image"], image[::-1])
    np.testing.assert_array_equal(flipped["label"], label[::-1])
    for seed in range(4):  # vflip=0 keeps every other step's draws (earlier runs reproduce)
        plain = train_transform(crop_size=12, scale_range=(0.5, 2.0), seed=seed)(item)
        zero = train_transform(crop_size=12, scale_range=(0.5, 2.0), vflip=0.0, seed=seed)(item)
        np.testing.assert_array_equal(plain["image"], zero["image"])
        np.testing.assert_array_equal(plain["label"], zero["label"])
    with pytest.raises(ValueError, match="vflip must be a probability"):
        train_transform(crop_size=12, vflip=1.5)


def test_default_fill_is_mean_colour():
    image = np.full((8, 8, 3), 7, np.uint8)
    t = train_transform(crop_size=16, scale_range=(1.0, 1.0), seed=0)
    out = t({"image": image, "label": None})
    assert out["label"] is None
    assert tuple(out["image"][0, 0]) == T.MEAN_FILL


def test_scribble_255_never_interpolated():
    rng = np.random.default_rng(3)
    h, w = 40, 52
    label = np.full((h, w), IGNORE_LABEL, np.uint8)  # sparse scribbles: thin lines on 255
    for c in range(3):
        r = rng.integers(2, h - 2)
        label[r, 3:-3] = c
        label[3:-3, rng.integers(2, w - 2)] = c
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    t = train_transform(crop_size=48, scale_range=(0.5, 2.0), seed=1)
    for _ in range(20):
        lab = t({"image": image, "label": label})["label"]
        assert set(np.unique(lab).tolist()) <= {0, 1, 2, IGNORE_LABEL, PAD_LABEL}
        # still mostly unlabelled
        assert (lab == IGNORE_LABEL).sum() > 0.6 * (lab != PAD_LABEL).sum()


def test_seed_determinism():
    image, label = coded_pair(1)

    def run(seed):
        t = train_transform(crop_size=32, seed=seed, color_jitter=0.3)
        return [t({"image": image, "label": label}) for _ in range(4)]

    a, b, c = run(5), run(5), run(6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert any(not np.array_equal(x["label"], z["label"]) for x, z in zip(a, c))
    # successive calls draw new augmentations
    assert any(not np.array_equal(a[0]["label"], x["label"]) for x in a[1:])


class _Info:
    def __init__(self, id, seed):
        self.id, self.seed = id, seed


def test_workers_get_different_streams(monkeypatch):
    image, label = coded_pair(2)
    t = train_transform(crop_size=32, seed=0)
    outputs = []
    for worker in range(2):
        monkeypatch.setattr(T, "get_worker_info", lambda w=worker: _Info(w, 1000 + w))
        copy = train_transform(crop_size=32, seed=0)  # each worker holds its own copy
        outputs.append([copy({"image": image, "label": label})["label"] for _ in range(3)])
    assert any(not np.array_equal(x, y) for x, y in zip(*outputs))
    assert t.seed == 0


def test_val_transform_pads_to_multiple():
    image, label = coded_pair(0, h=40, w=50, cell=4)
    out = val_transform(pad_multiple=32, fill=FILL)({"image": image, "label": label, "id": "v"})
    assert out["image"].shape == (64, 64, 3) and out["label"].shape == (64, 64)
    assert out["orig_size"] == (40, 50)
    np.testing.assert_array_equal(out["image"][:40, :50], image)  # top-left, untouched
    np.testing.assert_array_equal(out["label"][:40, :50], label)
    assert np.all(out["label"][40:] == PAD_LABEL) and np.all(out["label"][:, 50:] == PAD_LABEL)
    same = val_transform(pad_multiple=8)({"image": image[:40, :48], "label": None})
    assert same["image"].shape == (40, 48, 3)


def test_argument_errors():
    with pytest.raises(ValueError, match="crop_size"):
        train_transform(crop_size=0)
    with pytest.raises(ValueError, match="scale_range"):
        train_transform(scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="hflip"):
        train_transform(hflip=1.5)
    with pytest.raises(ValueError, match="fill"):
        train_transform(fill=(1, 2))
    with pytest.raises(ValueError, match="pad_multiple"):
        val_transform(pad_multiple=0)
    t = train_transform(crop_size=8)
    with pytest.raises(ValueError, match="differs from image"):
        t({"image": np.zeros((4, 4, 3), np.uint8), "label": np.zeros((4, 5), np.uint8)})
    with pytest.raises(ValueError, match="uint8"):
        t({"image": np.zeros((4, 4, 3), np.float32), "label": None})


def test_missing_albumentations_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "albumentations", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r'pip install "wsdeploy\[train\]"'):
        train_transform()
