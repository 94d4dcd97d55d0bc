"""annotate's stroke unary (`cut_stroke_unary`, `cut_stroke_floor`): the strokes' own colour
posterior with a floored likelihood, the energy still monotone, the warm start still the fresh
run, and clear errors on bad settings."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("maxflow")

from wsdeploy.training import AnnotateConfig, annotate
from wsdeploy.training.annotate.graphcut import _stroke_unary
from wsdeploy.training.annotate.mixture import fit_mixtures, log_likelihood

from tests.training.test_annotate_graphcut import disc_scene


def test_stroke_unary_is_log_k_on_a_colour_no_stroke_shows_and_trusts_a_stroked_one():
    rng = np.random.default_rng(0)
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :10] = [200, 40, 40]  # class 0's strokes
    image[:, 10:20] = [40, 40, 200]  # class 1's strokes
    image[:, 20:] = [40, 220, 40]  # a colour no stroke shows
    image = (image + rng.normal(0, 4, image.shape)).clip(0, 255).astype(np.uint8)
    strokes = np.full((20, 30), 255, np.uint8)
    strokes[:, 2:8], strokes[:, 12:18] = 0, 1
    ll = log_likelihood(fit_mixtures(image, strokes, num_classes=2, components=2, iterations=5), image)
    u = _stroke_unary(ll, -13.0)  # (2, H, W)
    assert u.shape == (2, 20, 30) and (u >= 0).all()
    np.testing.assert_allclose(u[:, :, 22:], np.log(2.0), atol=1e-3)  # no evidence either way
    for c, cols in ((0, slice(0, 10)), (1, slice(10, 20))):  # a stroked colour: its class, confidently
        assert (u[c, :, cols] < u[1 - c, :, cols]).all()
        assert np.median(u[c, :, cols]) < 0.05 and np.median(u[1 - c, :, cols]) > 3
    bare = _stroke_unary(ll, -1e4)  # no floor: the unstroked colour goes to one class
    assert np.abs(bare[0, :, 22:] - bare[1, :, 22:]).min() > 5


def test_stroke_unary_keeps_the_energy_monotone_and_the_strokes():
    image, scribbles, truth = disc_scene()
    for cfg in (AnnotateConfig(cut_size=20, cut_stroke_unary=1.0), AnnotateConfig(cut_size=40, cut_stroke_unary=2.0,
                                                                                 cut_stroke_floor=-15.0)):
        result = annotate(image, scribbles, config=cfg)
        energies = result.state.energies
        assert all(b <= a for a, b in itertools.pairwise(energies))
        assert (result.labels == truth).mean() > 0.9
        labelled = scribbles != 255
        np.testing.assert_array_equal(result.labels[labelled], scribbles[labelled])


def test_stroke_unary_changes_the_result_and_an_update_equals_a_fresh_run():
    image, scribbles, _ = disc_scene(48, seed=3)
    cfg = AnnotateConfig(cut_size=48, cut_stroke_unary=1.0)
    first = annotate(image, scribbles, config=cfg)
    assert first.state.energies[0] != annotate(image, scribbles, config=AnnotateConfig(cut_size=48)).state.energies[0]
    more = scribbles.copy()
    more[10:38, 45] = 0  # one more background stroke: the strokes' models are refitted on it
    warm = annotate(image, more, config=cfg, previous=first)
    fresh = annotate(image, more, config=cfg)
    np.testing.assert_array_equal(warm.labels, fresh.labels)
    assert warm.state.energies[-1] == pytest.approx(fresh.state.energies[-1], rel=1e-3)


def test_bad_stroke_settings_are_clear_errors():
    with pytest.raises(ValueError, match="cut_stroke_unary must be >= 0"):
        AnnotateConfig(cut_stroke_unary=-1.0)
    with pytest.raises(ValueError, match="cut_stroke_floor must be finite"):
        AnnotateConfig(cut_stroke_floor=float("-inf"))
    with pytest.raises(TypeError, match="cut_stroke_floor must be a real number"):
        AnnotateConfig(cut_stroke_floor="low")
