"""annotate's geodesic prior on the strokes' colour-posterior metric (`cut_geodesic_likelihood`):
texture that one class's strokes explain costs nothing to cross, a change of class does; the
warm start recomputes it exactly; the graph cut's energy still never rises."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("maxflow")
pytest.importorskip("scipy")

from wsdeploy.training import AnnotateConfig, annotate  # noqa: E402
from wsdeploy.training.annotate.geodesic import coarse_distances, stroke_posterior  # noqa: E402

from tests.training.test_annotate_graphcut import disc_scene  # noqa: E402


def striped_scene(h: int = 24, w: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left half (class 0): vertical stripes of two greens, 1 px each (a strong texture);
    right half (class 1): flat red. One stroke per class at the outer edges, the class-0
    stroke across both greens."""
    truth = np.zeros((h, w), np.uint8)
    truth[:, w // 2:] = 1
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2] = [40, 160, 40]
    image[:, 1: w // 2: 2] = [10, 90, 10]
    image[:, w // 2:] = [200, 40, 40]
    scribbles = np.full((h, w), 255, np.uint8)
    scribbles[4:20, 0:2] = 0
    scribbles[4:20, w - 1] = 1
    return image, scribbles, truth


def test_stroke_posterior_is_a_distribution_that_separates_the_strokes_colours():
    image, scribbles, truth = striped_scene()
    p = stroke_posterior(image, scribbles, num_classes=2, components=3)
    assert p.shape == (2, *truth.shape) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-12)
    assert (p.argmax(0) == truth).all()


def test_posterior_metric_ignores_texture_one_class_explains_but_not_the_class_edge():
    image, scribbles, truth = striped_scene()
    rgb = coarse_distances(image, scribbles, num_classes=2, size=48).distances
    lik = coarse_distances(image, scribbles, num_classes=2, size=48, colour_weight=0.0,
                           likelihood_weight=100.0, components=3).distances
    left = truth == 0
    # crossing 23 stripes costs ~23 x 106 RGB units on the RGB metric, ~nothing on the posterior's
    assert rgb[0][left].max() > 1000
    assert lik[0][left].max() < 30  # the Euclidean length across the half, plus a little
    # the class edge costs the full posterior change (~likelihood_weight) on the posterior metric
    assert lik[0][~left].min() > 100 > lik[0][left].max()
    assert (lik[1][~left] < 30).all()


def test_posterior_metric_warm_start_recomputes_the_distances_exactly():
    image, scribbles, _ = disc_scene(40, seed=1)
    before = coarse_distances(image, scribbles, num_classes=2, size=20, likelihood_weight=50.0)
    more = scribbles.copy()
    more[36, 5:30] = 0
    update = coarse_distances(image, more, num_classes=2, size=20, likelihood_weight=50.0, previous=before)
    fresh = coarse_distances(image, more, num_classes=2, size=20, likelihood_weight=50.0)
    assert update.graph is not before.graph  # the posterior, and so every path cost, moved
    np.testing.assert_array_equal(update.distances, fresh.distances)


def test_graph_cut_on_the_posterior_metric_lowers_its_energy_and_warm_starts():
    image, scribbles, truth = disc_scene(48, seed=3)
    cfg = AnnotateConfig(cut_size=48, cut_geodesic_likelihood=100.0, cut_geodesic_colour=0.0)
    first = annotate(image, scribbles, config=cfg)
    energies = first.state.energies
    assert all(b <= a for a, b in zip(energies, energies[1:]))
    assert (first.labels == truth).mean() > 0.9
    more = scribbles.copy()
    more[10:38, 45] = 0
    warm = annotate(image, more, config=cfg, previous=first)
    fresh = annotate(image, more, config=cfg)
    np.testing.assert_array_equal(warm.labels, fresh.labels)
    np.testing.assert_array_equal(warm.state.geodesic.distances, fresh.state.geodesic.distances)
    # a state of the RGB metric is not reused for the posterior metric (nor the reverse)
    plain = annotate(image, scribbles, config=AnnotateConfig(cut_size=48))
    switched = annotate(image, more, config=cfg, previous=plain)
    np.testing.assert_array_equal(switched.state.geodesic.distances, fresh.state.geodesic.distances)
    with pytest.raises(ValueError, match="cut_geodesic_likelihood must be >= 0"):
        AnnotateConfig(cut_geodesic_likelihood=-1.0)
