"""`wsdeploy.load` / `Segmenter.segment`: every input kind, batches, padding, bad inputs."""
from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch

import wsdeploy
from wsdeploy.checkpoint import ModelCard, save_checkpoint
from wsdeploy.models import build_model

CLASSES = ["background", "red", "green"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    card = ModelCard(arch="deeplabv3plus_resnet18", arch_kwargs={"width": 16}, classes=CLASSES)
    model = build_model(card.arch, card.num_classes, **card.arch_kwargs)
    with torch.no_grad():  # non-trivial BN statistics so outputs vary across pixels
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model, card)
    return path


@pytest.fixture(scope="module")
def segmenter(checkpoint):
    return wsdeploy.load(checkpoint, device="cpu")


@pytest.fixture()
def image() -> np.ndarray:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 2)


def test_segment_array_shapes(segmenter, image):
    seg = segmenter.segment(image)
    assert isinstance(seg, wsdeploy.Segmentation)
    assert seg.labels.shape == (37, 53) and seg.labels.dtype == np.uint8
    assert seg.probs is None and seg.classes == CLASSES
    assert seg.labels.max() < len(CLASSES)


def test_return_probs_is_a_distribution_matching_labels(segmenter, image):
    seg = segmenter.segment(image, return_probs=True)
    assert seg.probs.shape == (3, 37, 53) and seg.probs.dtype == np.float32
    np.testing.assert_allclose(seg.probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(seg.probs.argmax(0), seg.labels)


def test_every_input_kind_gives_the_same_labels(segmenter, image, tmp_path):
    expected = segmenter.segment(image).labels
    ok, png = cv2.imencode(".png", image[:, :, ::-1].copy())
    path = tmp_path / "img.png"
    path.write_bytes(png.tobytes())
    Image = pytest.importorskip("PIL.Image")
    for src in (png.tobytes(), path, str(path), Image.fromarray(image)):
        np.testing.assert_array_equal(segmenter.segment(src).labels, expected)
    rgba = np.concatenate([image, np.zeros((37, 53, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(segmenter.segment(rgba).labels, expected)
    gray = segmenter.segment(image[:, :, 0])
    assert gray.labels.shape == (37, 53)


def test_batch_of_mixed_sizes_equals_single_calls(segmenter, image):
    other = cv2.resize(image, (64, 48))
    results = segmenter.segment([image, other, image])
    assert isinstance(results, list) and len(results) == 3
    assert results[1].labels.shape == (48, 64)
    for img, res in zip([image, other, image], results):
        single = segmenter.segment(img, return_probs=True)
        np.testing.assert_array_equal(res.labels, single.labels)
    tuple_results = segmenter.segment((image,))
    assert isinstance(tuple_results, list)


def test_padding_is_cropped_and_sizes_not_multiple_of_stride(segmenter):
    for h, w in [(1, 1), (15, 17), (16, 16), (33, 1)]:
        img = np.full((h, w, 3), 100, np.uint8)
        assert segmenter.segment(img).labels.shape == (h, w)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 5), np.uint8), r"\(H, W, 3\)"),
        (b"garbage bytes", "not a supported image"),
        (b"", "empty"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
    ],
)
def test_bad_inputs(segmenter, bad, message):
    with pytest.raises(ValueError, match=message):
        segmenter.segment(bad)


def test_bad_input_in_a_list_names_its_index(segmenter, image):
    with pytest.raises(ValueError, match="image 1: .*uint8"):
        segmenter.segment([image, image.astype(np.float32)])
    with pytest.raises(ValueError, match="empty list"):
        segmenter.segment([])
    with pytest.raises(TypeError, match="image 0"):
        segmenter.segment([3.5])


def test_pixel_limit(checkpoint, image):
    small = wsdeploy.load(checkpoint, device="cpu", max_pixels=100)
    with pytest.raises(ValueError, match="too large"):
        small.segment(image)


def test_card_is_a_copy(segmenter):
    card = segmenter.card
    assert card["arch"] == "deeplabv3plus_resnet18" and card["classes"] == CLASSES
    card["classes"].append("x")
    assert segmenter.card["classes"] == CLASSES


def test_load_errors(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="unsupported model file"):
        wsdeploy.load(tmp_path / "model.xyz")
    with pytest.raises(ValueError, match="not found"):
        wsdeploy.load(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="device"):
        wsdeploy.load(checkpoint, device="tpu")
    with pytest.raises(TypeError, match="crf"):
        wsdeploy.load(checkpoint, device="cpu", crf="yes")


def test_concurrent_calls_from_threads(segmenter, image):
    expected = segmenter.segment(image).labels
    errors: list[BaseException] = []

    def work():
        try:
            for _ in range(3):
                np.testing.assert_array_equal(segmenter.segment(image).labels, expected)
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_crf_post_processing_is_applied_and_validated(checkpoint, segmenter, image):
    from wsdeploy.crf import dense_crf

    plain = segmenter.segment(image, return_probs=True)
    refined = segmenter.segment(image, return_probs=True, crf=True)
    np.testing.assert_allclose(refined.probs.sum(0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(refined.labels, refined.probs.argmax(0))
    expected = dense_crf(image, plain.probs)  # the same CRF applied by hand to the same probabilities
    np.testing.assert_allclose(refined.probs, expected, atol=1e-5)
    with_params = wsdeploy.load(checkpoint, device="cpu", crf={"iterations": 2, "bilateral_weight": 5.0})
    assert with_params.segment(image).labels.shape == image.shape[:2]
    with pytest.raises(ValueError, match="bilateral_wieght"):
        wsdeploy.load(checkpoint, device="cpu", crf={"bilateral_wieght": 5.0})
