"""Tests for wsdeploy.metrics: a hand-computed example, accumulation, ignore handling, errors."""
import json
import math

import numpy as np
import pytest
import torch

from wsdeploy.metrics import SegmentationMetric, confusion_matrix, mean_iou

# 3 x 4 image, 3 classes, two ignored pixels (255).
TARGET = np.array(
    [
        [0, 0, 1, 1],
        [0, 2, 2, 255],
        [255, 2, 1, 1],
    ],
    dtype=np.uint8,
)
PRED = np.array(
    [
        [0, 1, 1, 1],
        [0, 2, 1, 0],  # the 0 under the ignored target pixel is not counted
        [2, 2, 2, 1],  # nor the 2 here
    ],
    dtype=np.int64,
)
# Counted pairs (target, pred), by hand:
#   t=0: (0,0) (0,1) (0,0)            -> row [2, 1, 0]
#   t=1: (1,1) (1,1) (1,2) (1,1)      -> row [0, 3, 1]
#   t=2: (2,2) (2,1) (2,2)            -> row [0, 1, 2]
EXPECTED_CM = np.array([[2, 1, 0], [0, 3, 1], [0, 1, 2]])
# row sums (target) [3, 4, 3], column sums (pred) [2, 5, 3]
# IoU_0 = 2 / (3 + 2 - 2) = 2/3; IoU_1 = 3 / (4 + 5 - 3) = 1/2; IoU_2 = 2 / (3 + 3 - 2) = 1/2
EXPECTED_IOU = [2 / 3, 1 / 2, 1 / 2]
EXPECTED_MIOU = 5 / 9
EXPECTED_PIXEL_ACC = 7 / 10  # trace 7 over 10 counted pixels
EXPECTED_MEAN_ACC = (2 / 3 + 3 / 4 + 2 / 3) / 3  # = 25/36


def test_hand_computed_example():
    m = SegmentationMetric(3)
    m.update(PRED, TARGET)
    np.testing.assert_array_equal(m.confusion_matrix, EXPECTED_CM)
    np.testing.assert_allclose(m.per_class_iou(), EXPECTED_IOU)
    assert m.miou() == pytest.approx(EXPECTED_MIOU)
    assert m.pixel_accuracy() == pytest.approx(EXPECTED_PIXEL_ACC)
    assert m.mean_accuracy() == pytest.approx(25 / 36)
    assert m.mean_accuracy() == pytest.approx(EXPECTED_MEAN_ACC)
    assert m.num_pixels == 10
    assert mean_iou(PRED, TARGET, 3) == pytest.approx(EXPECTED_MIOU)
    np.testing.assert_array_equal(confusion_matrix(PRED, TARGET, 3), EXPECTED_CM)


def test_torch_inputs_match_numpy():
    m = SegmentationMetric(3)
    m.update(torch.from_numpy(PRED), torch.from_numpy(TARGET))
    np.testing.assert_array_equal(m.confusion_matrix, EXPECTED_CM)


def test_absent_class_is_nan_and_left_out_of_mean():
    m = SegmentationMetric(4)  # class 3 never appears in target or prediction
    m.update(PRED, TARGET)
    iou = m.per_class_iou()
    assert math.isnan(iou[3])
    np.testing.assert_allclose(iou[:3], EXPECTED_IOU)
    assert m.miou() == pytest.approx(EXPECTED_MIOU)
    assert math.isnan(m.per_class_accuracy()[3])


def test_class_predicted_but_absent_from_target_counts_as_zero():
    target = np.zeros((2, 2), np.uint8)
    pred = np.array([[0, 0], [0, 1]])
    m = SegmentationMetric(2)
    m.update(pred, target)
    np.testing.assert_allclose(m.per_class_iou(), [3 / 4, 0.0])
    assert m.miou() == pytest.approx(3 / 8)
    assert m.mean_accuracy() == pytest.approx(3 / 4)  # over classes present in the target


def test_accumulation_over_batches_equals_one_shot():
    rng = np.random.default_rng(0)
    k = 5
    target = rng.integers(0, k, size=(6, 17, 13)).astype(np.uint8)
    target[rng.random(target.shape) < 0.2] = 255
    pred = rng.integers(0, k, size=target.shape)
    one_shot = SegmentationMetric(k)
    one_shot.update(pred, target)
    batched = SegmentationMetric(k)
    for i in range(0, 6, 2):
        batched.update(pred[i : i + 2], target[i : i + 2])
    per_image = SegmentationMetric(k)
    for p, t in zip(pred, target):
        per_image.update(p, t)
    np.testing.assert_array_equal(batched.confusion_matrix, one_shot.confusion_matrix)
    np.testing.assert_array_equal(per_image.confusion_matrix, one_shot.confusion_matrix)
    assert batched.miou() == one_shot.miou()
    # Against a slow reference count.
    ref = np.zeros((k, k), np.int64)
    for t, p in zip(target.ravel(), pred.ravel()):
        if t != 255:
            ref[t, p] += 1
    np.testing.assert_array_equal(one_shot.confusion_matrix, ref)


def test_ignore_pixels_do_not_count_whatever_the_prediction():
    target = np.full((3, 3), 255, np.uint8)
    target[0, 0] = 1
    m = SegmentationMetric(2)
    m.update(np.ones((3, 3), np.int64), target)
    assert m.num_pixels == 1
    assert m.miou() == 1.0 and m.pixel_accuracy() == 1.0


def test_several_ignore_values():
    target = np.array([[0, 254], [255, 1]], np.uint8)
    pred = np.array([[0, 1], [1, 1]])
    m = SegmentationMetric(2, ignore_index=(254, 255))
    m.update(pred, target)
    np.testing.assert_array_equal(m.confusion_matrix, [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="254"):
        SegmentationMetric(2).update(pred, target)  # 254 is not ignored by default


def test_empty_metric_is_nan_and_summary_is_json():
    m = SegmentationMetric(3, class_names=["bg", "cat", "dog"])
    assert math.isnan(m.miou()) and math.isnan(m.pixel_accuracy())
    assert json.loads(json.dumps(m.summary()))["miou"] is None
    m.update(PRED, TARGET)
    s = json.loads(json.dumps(m.summary(), allow_nan=False))
    assert s["miou"] == pytest.approx(EXPECTED_MIOU)
    assert s["per_class_iou"]["bg"] == pytest.approx(2 / 3)
    assert s["num_pixels"] == 10
    m.reset()
    assert m.num_pixels == 0


def test_add_confusion_matrix():
    m = SegmentationMetric(3)
    m.add_confusion_matrix(torch.from_numpy(EXPECTED_CM))
    m.add_confusion_matrix(EXPECTED_CM)
    np.testing.assert_array_equal(m.confusion_matrix, 2 * EXPECTED_CM)
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        m.add_confusion_matrix(np.zeros((2, 2), np.int64))


def test_errors():
    m = SegmentationMetric(3)
    with pytest.raises(ValueError, match=r"\[3\]"):  # target class 3 with num_classes=3
        m.update(np.zeros((2, 2), np.int64), np.full((2, 2), 3, np.uint8))
    with pytest.raises(ValueError, match="pred values"):
        m.update(np.full((2, 2), 3), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="pred values"):
        m.update(np.full((2, 2), -1), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="shapes differ"):
        m.update(np.zeros((2, 2), np.int64), np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        m.update(np.zeros(4, np.int64), np.zeros(4, np.uint8))
    with pytest.raises(TypeError, match="integer"):
        m.update(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8))
    with pytest.raises(TypeError, match="list"):
        m.update([[0]], np.zeros((1, 1), np.uint8))
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationMetric(0)
    with pytest.raises(ValueError, match="class_names"):
        SegmentationMetric(3, class_names=["a"])
    assert m.num_pixels == 0  # failed updates leave the state untouched
