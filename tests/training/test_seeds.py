"""Seeds from CAMs: the threshold rules, the CRF check, seed statistics and the sweep."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from wsdeploy.training.tags.seeds import (
    SeedStats,
    cams_to_labels,
    make_seeds,
    pick_threshold,
    refine_seeds_crf,
    seed_stats,
    sweep_thresholds,
)

from wsdeploy.crf import CRFParams
from wsdeploy.metrics import mean_iou

# Two maps on a 2 x 3 image. m = max, c* = argmax (by map row 0 / row 1):
#   m  = [[0.9, 0.5, 0.1], [0.6, 0.35, 0.03]]
#   c* = [[row0, row1, row0], [row1, row0, row1]]
CAMS = np.array([
    [[0.9, 0.4, 0.1], [0.0, 0.35, 0.02]],
    [[0.2, 0.5, 0.05], [0.6, 0.1, 0.03]],
], np.float32)


def test_seeds_with_background_hand_made():
    kw = {"num_classes": 4, "background_index": 0}
    seeds = make_seeds(CAMS, np.array([1, 3]), fg_threshold=0.3, bg_threshold=0.05, **kw)
    assert seeds.tolist() == [[1, 3, 255], [3, 1, 0]]
    seeds = make_seeds(CAMS, np.array([1, 3]), fg_threshold=0.3, bg_threshold=0.1, **kw)
    assert seeds.tolist() == [[1, 3, 0], [3, 1, 0]]  # m <= bg_threshold, ties included
    no_bg_seeds = make_seeds(CAMS, np.array([1, 3]), fg_threshold=0.3, **kw)
    assert no_bg_seeds.tolist() == [[1, 3, 255], [3, 1, 255]]
    assert seeds.dtype == np.uint8
    dense = cams_to_labels(CAMS, np.array([1, 3]), threshold=0.3, **kw)
    assert dense.tolist() == [[1, 3, 0], [3, 1, 0]]
    power = cams_to_labels(CAMS, np.array([1, 3]), bg_mode="power", alpha=1.0, **kw)
    assert power.tolist() == [[1, 3, 0], [3, 0, 0]]  # bg where 1 - m > m; m = 0.5 ties to the CAM
    # no tag: m = 0 everywhere
    empty = np.zeros((0, 2, 3), np.float32)
    assert make_seeds(empty, np.zeros(0), fg_threshold=0.3, bg_threshold=0.05, **kw).tolist() == [[0] * 3] * 2
    assert cams_to_labels(empty, np.zeros(0), threshold=0.3, **kw).tolist() == [[0] * 3] * 2


def test_seeds_without_background_hand_made():
    kw = {"num_classes": 2, "background_index": None}
    seeds = make_seeds(CAMS, np.array([0, 1]), fg_threshold=0.3, **kw)
    assert seeds.tolist() == [[0, 1, 255], [1, 0, 255]]
    assert cams_to_labels(CAMS, np.array([0, 1]), threshold=0.9, **kw).tolist() == [[0, 1, 0], [1, 0, 1]]
    empty = np.zeros((0, 2, 3), np.float32)
    assert make_seeds(empty, np.zeros(0), fg_threshold=0.0, **kw).tolist() == [[255] * 3] * 2
    assert cams_to_labels(empty, np.zeros(0), **kw).tolist() == [[255] * 3] * 2


def test_seed_rules_reject_bad_settings():
    with pytest.raises(ValueError, match="no background class"):
        make_seeds(CAMS, np.array([0, 1]), num_classes=2, background_index=None, fg_threshold=0.3, bg_threshold=0.1)
    with pytest.raises(ValueError, match=r"bg_threshold must be a number <= fg_threshold"):
        make_seeds(CAMS, np.array([1, 2]), num_classes=3, background_index=0, fg_threshold=0.3, bg_threshold=0.4)
    with pytest.raises(ValueError, match=r"class_indices \[0\] are not foreground"):
        make_seeds(CAMS, np.array([0, 2]), num_classes=3, background_index=0, fg_threshold=0.3)
    with pytest.raises(ValueError, match="needs a threshold"):
        cams_to_labels(CAMS, np.array([1, 2]), num_classes=3, background_index=0)
    with pytest.raises(ValueError, match=r"expected cams \(T, H, W\)"):
        make_seeds(CAMS, np.array([1]), num_classes=3, background_index=0, fg_threshold=0.3)


def test_equal_thresholds_give_the_dense_constant_map():
    rng = np.random.default_rng(0)
    cams, classes = rng.random((3, 20, 30), dtype=np.float32), np.array([2, 5, 7])
    kw = {"num_classes": 8, "background_index": 0}
    for t in (0.2, 0.5, 0.8):
        np.testing.assert_array_equal(
            make_seeds(cams, classes, fg_threshold=t, bg_threshold=t, **kw),
            cams_to_labels(cams, classes, threshold=t, **kw),
        )


def test_irn_constant_background_scores_are_the_threshold_rule():
    """IRN's cam_to_ir_label without its CRF: argmax of CAMs padded with 0.30 and 0.05."""
    rng = np.random.default_rng(1)
    cams, classes = rng.random((2, 40, 50), dtype=np.float32) ** 3, np.array([4, 9])
    keys = np.concatenate([[0], classes])
    fg_conf = keys[np.argmax(np.pad(cams, ((1, 0), (0, 0), (0, 0)), constant_values=0.30), 0)]
    bg_conf = keys[np.argmax(np.pad(cams, ((1, 0), (0, 0), (0, 0)), constant_values=0.05), 0)]
    irn = fg_conf.copy()
    irn[fg_conf == 0] = 255
    irn[bg_conf + fg_conf == 0] = 0
    ours = make_seeds(cams, classes, num_classes=21, background_index=0, fg_threshold=0.30, bg_threshold=0.05)
    assert set(np.unique(ours).tolist()) == {0, 4, 9, 255}
    np.testing.assert_array_equal(ours, irn)


def test_power_background_is_a_constant_threshold_on_the_max_cam():
    rng = np.random.default_rng(2)
    cams, classes = rng.random((2, 60, 60), dtype=np.float32), np.array([1, 2])
    kw = {"num_classes": 3, "background_index": 0}
    for alpha in (1.0, 4.0, 16.0):
        lo, hi = 0.0, 1.0  # root of (1 - t)^alpha = t
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if (1 - mid) ** alpha > mid else (lo, mid)
        power = cams_to_labels(cams, classes, bg_mode="power", alpha=alpha, **kw)
        constant = cams_to_labels(cams, classes, threshold=lo, **kw)
        away = np.abs(cams.max(0) - lo) > 1e-4  # float rounding at the root itself
        np.testing.assert_array_equal(power[away], constant[away])


# The CRF check.


def test_crf_without_iterations_keeps_every_threshold_seed():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    cams, classes = rng.random((2, 16, 20), dtype=np.float32), np.array([1, 2])
    crf = CRFParams(iterations=0)
    for bg, bg_thr, k in ((0, 0.1, 3), (None, None, 3)):
        cls = classes if bg == 0 else np.array([0, 2])
        kw = {"num_classes": k, "background_index": bg, "fg_threshold": 0.4, "bg_threshold": bg_thr}
        np.testing.assert_array_equal(refine_seeds_crf(image, cams, cls, crf=crf, **kw), make_seeds(cams, cls, **kw))


def _isolated_seeds() -> tuple[np.ndarray, np.ndarray]:
    """Uniform image; class a at 0.9 everywhere but a 0.01 dip at (6, 6); class b 0.95 at (3, 3)."""
    image = np.full((12, 12, 3), 120, np.uint8)
    cams = np.zeros((2, 12, 12), np.float32)
    cams[0] = 0.9
    cams[0, 6, 6] = 0.01
    cams[1, 3, 3] = 0.95
    return image, cams


@pytest.mark.parametrize("background", [True, False])
def test_crf_removes_seeds_that_disagree_with_their_surroundings(background):
    image, cams = _isolated_seeds()
    if background:
        classes, kw = np.array([1, 2]), {"num_classes": 3, "background_index": 0, "bg_threshold": 0.05}
    else:
        classes, kw = np.array([0, 1]), {"num_classes": 2, "background_index": None}
    kw["fg_threshold"] = 0.3
    plain = make_seeds(cams, classes, **kw)
    refined = refine_seeds_crf(image, cams, classes, **kw)
    assert plain[3, 3] == classes[1] and refined[3, 3] == 255
    if background:
        assert plain[6, 6] == 0 and refined[6, 6] == 255
    others = np.ones((12, 12), bool)
    others[3, 3] = others[6, 6] = False
    np.testing.assert_array_equal(refined[others], plain[others])
    # a batch sharing its classes gives the per-image result
    batch = refine_seeds_crf(np.stack([image, image[::-1]]), np.stack([cams, cams[:, ::-1]]), classes, **kw)
    np.testing.assert_array_equal(batch[0], refined)
    np.testing.assert_array_equal(batch[1], refine_seeds_crf(image[::-1], cams[:, ::-1], classes, **kw))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_crf_seeds_on_cuda_match_cpu():
    image, cams = _isolated_seeds()
    kw = {"num_classes": 3, "background_index": 0, "fg_threshold": 0.3, "bg_threshold": 0.05}
    on_gpu = refine_seeds_crf(torch.from_numpy(image).cuda(), torch.from_numpy(cams).cuda(), np.array([1, 2]), **kw)
    np.testing.assert_array_equal(on_gpu, refine_seeds_crf(image, cams, np.array([1, 2]), **kw))


# Seed statistics.

SEEDS = np.array([[1, 2, 255], [0, 255, 1]], np.uint8)
MASK = np.array([[1, 1, 0], [0, 2, 255]], np.uint8)


def test_seed_stats_hand_computed_with_background():
    # valid pixels: 5; seeded and valid: (0,0) right, (0,1) wrong, (1,0) right
    stats = seed_stats(SEEDS, MASK, 3, background_index=0)
    assert stats.precision == pytest.approx(2 / 3) and stats.coverage == pytest.approx(3 / 5)
    # (a): IoU 1 (bg), 1/2 (class 1: one missed as 2), 0 (class 2: one false positive)
    assert stats.miou_ignored == pytest.approx((1 + 1 / 2 + 0) / 3)
    # (b): unseeded (0,2) -> bg, right; (1,1) -> bg, wrong: IoU 2/3, 1/2, 0
    assert stats.miou_as_background == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert stats.confusion_as_background.tolist() == [[2, 0, 0], [0, 1, 1], [1, 0, 0]]


def test_seed_stats_hand_computed_without_background():
    stats = seed_stats(SEEDS, MASK, 3, background_index=None)
    assert stats.precision == pytest.approx(2 / 3) and stats.coverage == pytest.approx(3 / 5)
    assert stats.miou_ignored == pytest.approx(1 / 2)
    # (b): unseeded pixels are "none", wrong for every class: IoU 1/2, 1/2, 0
    assert stats.miou_as_background == pytest.approx(1 / 3)
    assert stats.confusion_as_background.shape == (4, 4)
    assert stats.to_dict() == {"miou_as_background": pytest.approx(1 / 3), "miou_ignored": pytest.approx(1 / 2),
                               "precision": pytest.approx(2 / 3), "coverage": pytest.approx(3 / 5)}


def test_seed_stats_accumulate_and_match_mean_iou_when_fully_seeded():
    rng = np.random.default_rng(4)
    seeds = [rng.integers(0, 3, (5, 7)).astype(np.uint8) for _ in range(3)]
    masks = [rng.integers(0, 3, (5, 7)).astype(np.uint8) for _ in range(3)]
    seeds[0][0, :] = 255
    total = sum((seed_stats(s, m, 3, background_index=0) for s, m in zip(seeds, masks)),
                seed_stats(np.zeros((0, 0), np.uint8), np.zeros((0, 0), np.uint8), 3, background_index=0))
    whole = seed_stats(np.concatenate(seeds), np.concatenate(masks), 3, background_index=0)
    np.testing.assert_array_equal(total.confusion_ignored, whole.confusion_ignored)
    assert total.miou_as_background == whole.miou_as_background
    full = seed_stats(seeds[1], masks[1], 3, background_index=None)
    assert full.miou_ignored == full.miou_as_background == pytest.approx(mean_iou(seeds[1], masks[1], 3))
    assert full.coverage == 1.0
    with pytest.raises(ValueError, match=r"seed values \[7\]"):
        seed_stats(np.full((2, 2), 7, np.uint8), np.zeros((2, 2), np.uint8), 3, background_index=0)
    assert isinstance(total, SeedStats) and math.isnan(seed_stats(
        np.zeros((0, 0), np.uint8), np.zeros((0, 0), np.uint8), 3, background_index=0).precision)


# The sweep.


class _MaskData:
    """A tiny in-memory dataset with masks: items {"id", "label"}."""

    labels = "masks"

    def __init__(self, classes: list[str], masks: dict[str, np.ndarray]) -> None:
        self.classes = classes
        self.items = [{"id": i, "label": m} for i, m in masks.items()]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _sweep_case(background: bool) -> tuple[_MaskData, dict]:
    rng = np.random.default_rng(5)
    classes = ["background", "cat", "dog", "cow"] if background else ["sky", "ball", "star", "ring"]
    first = 1 if background else 0
    masks, cams = {}, {}
    for n, tagged in enumerate(([1, 2], [3], [])):
        mask = rng.integers(0, 4, (9, 11)).astype(np.uint8)
        mask[0, :3] = 255
        masks[f"im{n}"] = mask
        tagged = [t - 1 + first for t in tagged]
        cams[f"im{n}"] = (rng.random((len(tagged), 9, 11), dtype=np.float32), np.array(tagged))
    cams["other_split"] = cams["im0"]
    return _MaskData(classes, masks), cams


def test_sweep_with_background_matches_the_rules_and_reads_only_its_split():
    data, cams = _sweep_case(background=True)
    asked: list[str] = []

    def source(image_id: str):
        asked.append(image_id)
        return cams[image_id]

    rows = sweep_thresholds(source, data, fg_thresholds=[0.3, 0.6], bg_thresholds=[0.1, 0.5])
    assert asked == ["im0", "im1", "im2"]
    assert [(r["fg_threshold"], r["bg_threshold"]) for r in rows] == [(0.3, 0.1), (0.6, 0.1), (0.6, 0.5)]
    for row in rows:
        total = None
        for item in data.items:
            c, k = cams[item["id"]]
            seeds = make_seeds(c, k, num_classes=4, background_index=0,
                               fg_threshold=row["fg_threshold"], bg_threshold=row["bg_threshold"])
            s = seed_stats(seeds, item["label"], 4, background_index=0)
            total = s if total is None else total + s
        assert row["miou_as_background"] == pytest.approx(total.miou_as_background)
        assert row["miou_ignored"] == pytest.approx(total.miou_ignored)
        assert row["precision"] == pytest.approx(total.precision)
        assert row["coverage"] == pytest.approx(total.coverage)
        # unseeded pixels as background: the dense constant-threshold map, whatever bg_threshold
        assert row["cam_miou"] == pytest.approx(row["miou_as_background"])
        assert row["images"] == 3
    assert pick_threshold(rows) is max(rows, key=lambda r: r["miou_as_background"])
    assert pick_threshold(rows, key="precision") is max(rows, key=lambda r: r["precision"])


def test_sweep_without_background():
    data, cams = _sweep_case(background=False)
    rows = sweep_thresholds(cams, data, fg_thresholds=[0.0, 0.5, 0.9])
    assert [r["bg_threshold"] for r in rows] == [None, None, None]
    assert len({r["cam_miou"] for r in rows}) == 1  # one dense argmax map
    labels = [cams_to_labels(*cams[i["id"]], num_classes=4, background_index=None) for i in data.items]
    assert (labels[2] == 255).all()  # no tag, no background: no label
    dense = seed_stats(np.concatenate(labels), np.concatenate([i["label"] for i in data.items]), 4,
                       background_index=None)
    assert rows[0]["cam_miou"] == pytest.approx(dense.miou_as_background)
    assert rows[0]["miou_as_background"] == pytest.approx(dense.miou_as_background)  # fg 0: all seeded
    assert rows[2]["coverage"] < rows[1]["coverage"] < rows[0]["coverage"]
    with pytest.raises(ValueError, match="no background class"):
        sweep_thresholds(cams, data, fg_thresholds=[0.5], bg_thresholds=[0.1])


def test_sweep_and_pick_errors():
    data, cams = _sweep_case(background=True)
    data.labels = None
    with pytest.raises(ValueError, match="labels='masks'"):
        sweep_thresholds(cams, data, fg_thresholds=[0.5])
    data.labels = "masks"
    with pytest.raises(ValueError, match="no CAM for image 'im1'"):
        sweep_thresholds({"im0": cams["im0"]}, data, fg_thresholds=[0.5])
    with pytest.raises(ValueError, match="above every fg threshold"):
        sweep_thresholds(cams, data, fg_thresholds=[0.1], bg_thresholds=[0.5])
    with pytest.raises(ValueError, match="no sweep rows"):
        pick_threshold([])
    with pytest.raises(ValueError, match="unknown key 'miou'"):
        pick_threshold([{"miou_as_background": 0.5}], key="miou")
