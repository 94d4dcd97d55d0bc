"""wsdeploy.training.annotate's colour model (`colour`) and its scribbled-region filter
(`keep_scribbled_regions`), on small generated images."""
from __future__ import annotations

import numpy as np
import pytest

from wsdeploy.training import AnnotateConfig, annotate
from wsdeploy.training.annotate.colour import colour_log_likelihood, colour_log_posterior, fit_colour_model
from wsdeploy.training.annotate.image import keep_scribbled_regions

from tests.training.test_annotate import two_halves


def test_colour_model_separates_two_halves():
    image, scribbles, truth = two_halves()
    model = fit_colour_model(image, scribbles, num_classes=2, components=3)
    log_post = colour_log_posterior(model, image)
    assert log_post.shape == (2, *truth.shape) and log_post.dtype == np.float32
    assert (log_post <= 1e-6).all()
    np.testing.assert_allclose(np.exp(log_post).sum(0), 1.0, rtol=1e-5)
    assert (log_post.argmax(0) == truth).all()
    np.testing.assert_allclose(model.weights.sum(1), 1.0)


def test_colour_likelihood_matches_a_single_gaussian_by_hand():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    scribbles = np.full((10, 12), 255, np.uint8)
    scribbles[:5] = 0
    scribbles[5:] = 1
    model = fit_colour_model(image, scribbles, num_classes=2, components=1, iterations=0)
    x = image[:5].reshape(-1, 3).astype(np.float64)
    mean, cov = x.mean(0), np.cov(x.T, bias=True) + np.eye(3) * 9.0  # _COV_FLOOR
    d = image.reshape(-1, 3) - mean
    expected = -0.5 * (np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) + np.log(np.linalg.det(cov))
                       + 3 * np.log(2 * np.pi))
    np.testing.assert_allclose(colour_log_likelihood(model, image)[0].ravel(), expected, rtol=1e-4)


def test_colour_model_edge_cases():
    image, scribbles, _ = two_halves()
    flat = np.full_like(image, 100)  # one colour: fewer distinct pixels than components
    model = fit_colour_model(flat, scribbles, num_classes=3, components=5)  # class 2 has no stroke
    log_post = colour_log_posterior(model, flat)
    assert np.isfinite(log_post).all()
    assert (log_post[2] < log_post[0]).all()  # the flat density of a stroke-less class loses
    with pytest.raises(ValueError, match="expected image"):
        fit_colour_model(image[:, :-1], scribbles, num_classes=2)
    with pytest.raises(ValueError, match="components must be >= 1"):
        fit_colour_model(image, scribbles, num_classes=2, components=0)


def test_keep_scribbled_regions_relabels_unscribbled_regions():
    labels = np.zeros((8, 12), np.uint8)
    labels[1:3, 1:3] = 1  # class-1 blob with a stroke: kept
    labels[5:7, 8:11] = 1  # class-1 blob without one: becomes 0
    scribbles = np.full((8, 12), 255, np.uint8)
    scribbles[2, 2] = 1
    scribbles[0, 11] = 0
    probs = np.stack([1.0 - labels, labels.astype(float)]).astype(np.float32)
    out = keep_scribbled_regions(labels, scribbles, probs)
    expected = labels.copy()
    expected[5:7, 8:11] = 0
    np.testing.assert_array_equal(out, expected)

    three = np.full((4, 9), 0, np.uint8)
    three[:, 3:6] = 2  # class 2 unscribbled: goes to each pixel's next most probable class
    scr = np.full((4, 9), 255, np.uint8)
    scr[0, 0], scr[0, 8] = 0, 1
    three[:, 6:] = 1
    p = np.full((3, 4, 9), 0.1, np.float32)
    p[2, :, 3:6] = 0.8
    p[1, :, 5] = 0.15  # column 5 leans to class 1, columns 3-4 to class 0
    p[0, :, 3:5] = 0.15
    out = keep_scribbled_regions(three, scr, p)
    assert (out[:, 3:5] == 0).all() and (out[:, 5] == 1).all()


def test_colour_loss_is_reported_and_settings_are_checked():
    image, scribbles, truth = two_halves()
    result = annotate(image, scribbles, config=AnnotateConfig(method="network", size=32, steps=30, crf_iterations=2))
    assert "colour" in result.losses
    assert (result.labels == truth).mean() == 1.0
    off = annotate(image, scribbles, config=AnnotateConfig(method="network", size=32, steps=30, crf_iterations=2, colour_loss=0.0))
    assert "colour" not in off.losses
    with pytest.raises(TypeError, match="keep_scribbled_regions must be a bool"):
        AnnotateConfig(keep_scribbled_regions=1)
    with pytest.raises(ValueError, match="colour_loss must be >= 0"):
        AnnotateConfig(colour_loss=-1.0)
