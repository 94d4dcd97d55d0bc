"""annotate's graph cut: the max-flow minimiser against brute force, alpha-expansion, the
monotone energy of the iterations, the warm start against a fresh run, the colour mixtures and
the geodesic prior, and clear errors on bad input."""
from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

pytest.importorskip("maxflow")

from wsdeploy.training import AnnotateConfig, annotate  # noqa: E402
from wsdeploy.training.annotate.geodesic import (  # noqa: E402
    coarse_distances,
    geodesic_distances,
    geodesic_prior,
    stroke_pixels,
)
from wsdeploy.training.annotate.grid import (  # noqa: E402
    BinaryCut,
    binary_cut,
    contrast_weights,
    energy,
    expansion,
    minimise,
)
from wsdeploy.training.annotate.mixture import (  # noqa: E402
    COV_FLOOR,
    Mixtures,
    _m_step,
    distinct_colours,
    fit_mixtures,
    log_likelihood,
)

from tests.training.test_annotate import two_halves  # noqa: E402


def disc_scene(size: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A noisy textured disc (class 1) on a noisy background (class 0), overlapping colours;
    two short strokes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    truth = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3.2) ** 2).astype(np.uint8)
    base = np.where(truth[..., None] == 1, [150, 110, 60], [90, 120, 150]).astype(np.float64)
    image = (base + rng.normal(0, 15, base.shape)).clip(0, 255).astype(np.uint8)
    scribbles = np.full((size, size), 255, np.uint8)
    scribbles[size // 2, size // 2 - 3: size // 2 + 3] = 1
    scribbles[2:size - 2, 2] = 0
    return image, scribbles, truth


def test_binary_cut_is_the_exact_minimiser():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (3, 4, 3)).astype(np.uint8)
    unary = rng.normal(0, 3, (2, 3, 4))
    edges = contrast_weights(image, gamma=4.0)
    best = min(energy(np.array(bits, np.uint8).reshape(3, 4), unary, edges)
               for bits in itertools.product((0, 1), repeat=12))
    assert energy(binary_cut(unary, edges), unary, edges) == pytest.approx(best, abs=1e-9)


def test_binary_cut_resolved_on_its_graph_is_the_exact_minimiser_of_each_new_unary():
    """A dynamic cut: each solve only changes the terminal links (up and down, across the
    sign of U1 - U0, hard constraints included) and resumes from the previous flow."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 255, (3, 4, 3)).astype(np.uint8)
    edges = contrast_weights(image, gamma=4.0)
    cut = BinaryCut(edges)
    unary = rng.normal(0, 3, (2, 3, 4))
    for step in range(8):
        if step == 5:
            unary[1, 0, 0] = 1e6  # a stroke of class 0 added
        labels = cut.solve(unary)
        best = min(energy(np.array(bits, np.uint8).reshape(3, 4), unary, edges)
                   for bits in itertools.product((0, 1), repeat=12))
        assert energy(labels, unary, edges) == pytest.approx(best, abs=1e-9)
        unary = unary + rng.normal(0, 1.0 if step % 2 else 0.05, unary.shape)
    assert cut.solves == 8
    with pytest.raises(ValueError, match=r"expected unary \(2, 3, 4\), got \(2, 4, 3\)"):
        cut.solve(np.zeros((2, 4, 3)))


def test_dynamic_cut_on_a_larger_grid_matches_a_graph_built_afresh():
    image, _, truth = disc_scene(48, seed=5)
    edges = contrast_weights(image, gamma=50.0)
    rng = np.random.default_rng(8)
    base = np.stack([2.0 * truth, 2.0 * (1 - truth)]) + rng.normal(0, 1.5, (2, 48, 48))
    cut = BinaryCut(edges)
    for _ in range(4):
        unary = base + rng.normal(0, 0.5, base.shape)
        np.testing.assert_array_equal(cut.solve(unary), binary_cut(unary, edges))


def test_expansion_moves_never_raise_the_energy_and_find_three_regions():
    rng = np.random.default_rng(2)
    truth = np.zeros((12, 18), np.int64)
    truth[:, 6:] = 1
    truth[:, 12:] = 2
    unary = rng.normal(0, 1.0, (3, 12, 18)) + 2.0 * (np.arange(3)[:, None, None] != truth)
    edges = contrast_weights(np.zeros((12, 18, 3), np.uint8), gamma=1.0)
    labels = unary.argmin(0).astype(np.uint8)
    e = energy(labels, unary, edges)
    for alpha in (0, 1, 2, 0, 1, 2):
        labels = expansion(labels, alpha, unary, edges)
        e_new = energy(labels, unary, edges)
        assert e_new <= e + 1e-9
        e = e_new
    assert (minimise(unary, edges) == truth).mean() > 0.97


def test_iterations_lower_the_energy_monotonically_on_a_small_image():
    image, scribbles, truth = disc_scene()
    result = annotate(image, scribbles, config=AnnotateConfig(cut_size=40))
    energies = result.state.energies
    assert len(energies) >= 2
    assert all(b <= a for a, b in zip(energies, energies[1:]))
    assert (result.labels == truth).mean() > 0.9


def test_separable_image_and_three_classes():
    image, scribbles, truth = two_halves()
    result = annotate(image, scribbles)
    assert (result.labels == truth).all() and result.labels.dtype == np.uint8
    assert result.probs.shape == (2, *truth.shape) and result.probs.dtype == np.float32
    np.testing.assert_allclose(result.probs.sum(0), 1.0, atol=1e-5)
    image, scribbles, truth = two_halves(24, 36)
    image[:, 24:] = [40, 200, 40]
    truth[:, 24:] = 2
    scribbles[scribbles == 1] = 255
    scribbles[8:16, 21] = 1
    scribbles[8:16, 30] = 2
    result = annotate(image, scribbles)
    assert (result.labels == truth).mean() > 0.97
    assert result.probs.shape[0] == 3


def test_warm_start_after_one_more_stroke_equals_a_fresh_run():
    image, scribbles, _ = disc_scene(48, seed=3)
    first = annotate(image, scribbles, config=AnnotateConfig(cut_size=48))
    more = scribbles.copy()
    more[10:38, 45] = 0  # one more background stroke
    warm = annotate(image, more, config=AnnotateConfig(cut_size=48), previous=first)
    fresh = annotate(image, more, config=AnnotateConfig(cut_size=48))
    np.testing.assert_array_equal(warm.labels, fresh.labels)
    # the colour models reach the same labels from two starts; EM leaves them a hair apart
    assert warm.state.energies[-1] == pytest.approx(fresh.state.energies[-1], rel=1e-3)
    assert len(warm.state.energies) <= len(fresh.state.energies)


def test_warm_start_that_must_refit_the_colours_equals_a_fresh_run():
    """A stroke on a background colour no earlier stroke covered: the first mask takes that
    region as foreground, and the update must refit the colour models to reach the fresh run's
    mask (a warm start that stopped at its first cut from the previous models leaves ~790 of
    these 2304 pixels wrong, checked by hand)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    truth = (((yy - 24) ** 2 + (xx - 16) ** 2) < (48 / 4.5) ** 2).astype(np.uint8)
    background = np.where(xx[..., None] < 29, [90, 120, 150], [160, 150, 70])  # two colours
    base = np.where(truth[..., None] == 1, [150, 110, 60], background).astype(np.float64)
    image = (base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
    scribbles = np.full((48, 48), 255, np.uint8)
    scribbles[24, 13:19] = 1
    scribbles[2:46, 2] = 0
    more = scribbles.copy()
    more[8:40, 44] = 0  # on the second background colour
    cfg = AnnotateConfig(cut_size=48)
    first = annotate(image, scribbles, config=cfg)
    assert (first.labels == truth).mean() < 0.7  # the second background colour went to the object
    warm = annotate(image, more, config=cfg, previous=first)
    fresh = annotate(image, more, config=cfg)
    assert (fresh.labels == truth).mean() > 0.99
    np.testing.assert_array_equal(warm.labels, fresh.labels)
    assert warm.losses["cuts"] >= 2  # it did refit and cut again


def test_grabcut_levers_keep_the_energy_monotone():
    """GrabCut's first background model (every unlabelled pixel) and refits at full size."""
    image, scribbles, truth = disc_scene()
    for cfg in (AnnotateConfig(cut_size=20, cut_init="background"), AnnotateConfig(cut_size=20, cut_full_iterations=3)):
        result = annotate(image, scribbles, config=cfg)
        energies = result.state.energies
        assert all(b <= a for a, b in zip(energies, energies[1:]))
        assert (result.labels == truth).mean() > 0.9
    with pytest.raises(ValueError, match="cut_init must be one of"):
        AnnotateConfig(cut_init="box")
    with pytest.raises(ValueError, match="cut_full_iterations must be >= 1"):
        AnnotateConfig(cut_full_iterations=0)


def test_warm_start_below_full_size_agrees_with_a_fresh_run():
    image, scribbles, truth = disc_scene(48, seed=3)
    cfg = AnnotateConfig(cut_size=24)
    first = annotate(image, scribbles, config=cfg)
    more = scribbles.copy()
    more[10:38, 45] = 0
    warm = annotate(image, more, config=cfg, previous=first)
    fresh = annotate(image, more, config=cfg)
    assert warm.state.edges is first.state.edges and warm.state.edges_full is first.state.edges_full  # reused
    assert warm.state.cut is first.state.cut and warm.state.cut_full is first.state.cut_full  # graphs too
    assert first.state.colours is not None and warm.state.colours is first.state.colours  # found once
    assert first.state.colours_work is not None and warm.state.colours_work is first.state.colours_work
    assert (warm.labels == fresh.labels).mean() > 0.99
    assert (warm.labels == truth).mean() > 0.9


def test_warm_start_on_kept_graphs_gives_what_graphs_built_afresh_give():
    """The dynamic cuts and the per-colour likelihood of a warm start change no label: the
    same update with the previous graphs and colours dropped (rebuilt) agrees exactly."""
    image, scribbles, _ = disc_scene(48, seed=3)
    cfg = AnnotateConfig(cut_size=24)
    first = annotate(image, scribbles, config=cfg)
    more = scribbles.copy()
    more[10:38, 45] = 0
    dynamic = annotate(image, more, config=cfg, previous=first)  # on first's graphs, then...
    first.state.cut = first.state.cut_full = None  # ...an update that builds its own
    rebuilt = annotate(image, more, config=cfg, previous=first)
    assert rebuilt.state.cut is not dynamic.state.cut
    np.testing.assert_array_equal(dynamic.labels, rebuilt.labels)
    np.testing.assert_allclose(dynamic.probs, rebuilt.probs, rtol=0, atol=1e-6)
    most = more.copy()
    most[40:44, 8:30] = 0  # a second update, on the kept graphs and colours
    second = annotate(image, most, config=cfg, previous=dynamic)
    assert second.state.cut_full is dynamic.state.cut_full and second.state.colours is dynamic.state.colours
    assert dynamic.state.colours_work is not None and second.state.colours_work is dynamic.state.colours_work
    rebuilt.state.cut = rebuilt.state.cut_full = rebuilt.state.colours = rebuilt.state.colours_work = None
    np.testing.assert_array_equal(second.labels, annotate(image, most, config=cfg, previous=rebuilt).labels)


def test_a_pickled_result_still_warm_starts():
    """PyMaxflow's graphs do not pickle: a pickled state keeps the weights and rebuilds them."""
    image, scribbles, _ = disc_scene(48, seed=3)
    cfg = AnnotateConfig(cut_size=24)
    first = annotate(image, scribbles, config=cfg)
    copy = pickle.loads(pickle.dumps(first))
    assert copy.state.cut is not None and copy.state.cut._graph is None
    more = scribbles.copy()
    more[10:38, 45] = 0
    np.testing.assert_array_equal(annotate(image, more, config=cfg, previous=copy).labels,
                                  annotate(image, more, config=cfg, previous=first).labels)


def test_graph_cut_is_deterministic():
    image, scribbles, _ = disc_scene()
    a = annotate(image, scribbles, seed=0)
    b = annotate(image, scribbles, seed=5)
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s[:, :-2], r"expected shape \(H, W\) = \(40, 40\), got \(40, 38\)"),
        (lambda s: np.where(s == 1, 255, s).astype(np.uint8), "no foreground stroke"),
        (lambda s: np.where(s == 0, 1, s).astype(np.uint8), "single class"),
    ],
    ids=["other-size", "no-foreground", "one-class"],
)
def test_bad_inputs_give_clear_errors(edit, match):
    image, scribbles, _ = disc_scene()
    with pytest.raises(ValueError, match=match):
        annotate(image, edit(scribbles))


def test_warm_start_and_features_are_refused_where_they_do_not_apply():
    image, scribbles, _ = disc_scene()
    first = annotate(image, scribbles)
    other = image[:, ::-1].copy()
    with pytest.raises(ValueError, match="state of another photograph"):
        annotate(other, scribbles, previous=first)
    with pytest.raises(ValueError, match="method='network'"):
        annotate(image, scribbles, features=np.zeros((1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="method must be one of"):
        AnnotateConfig(method="grabcut")
    with pytest.raises(ValueError, match=r"\['size', 'steps'\] set the per-image network"):
        AnnotateConfig(steps=50, size=64)  # ignored by the graph cut: refused, not silently dropped


def test_mixture_log_likelihood_is_the_gaussian_density():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(2, 3, 3, 3))
    covs = a @ np.swapaxes(a, -1, -2) * 50 + np.eye(3) * 20
    mix = Mixtures(weights=np.array([[0.2, 0.8, 0.0], [0.5, 0.3, 0.2]]),
                   means=rng.uniform(0, 255, (2, 3, 3)), covs=covs)
    image = rng.integers(0, 255, (4, 5, 3)).astype(np.uint8)
    x = image.reshape(-1, 3).astype(np.float64)
    expect = np.zeros((2, 20))
    for c in range(2):
        for j in range(3):
            d = x - mix.means[c, j]
            q = np.einsum("ni,ij,nj->n", d, np.linalg.inv(covs[c, j]), d)
            expect[c] += mix.weights[c, j] * np.exp(-0.5 * q) / np.sqrt((2 * np.pi) ** 3 * np.linalg.det(covs[c, j]))
    np.testing.assert_allclose(log_likelihood(mix, image).reshape(2, -1), np.log(expect), rtol=1e-9)


def test_log_likelihood_per_distinct_colour_equals_per_pixel():
    rng = np.random.default_rng(9)
    image = rng.integers(0, 4, (6, 7, 3)).astype(np.uint8) * 60  # few colours, many repeats
    mix = fit_mixtures(image, rng.integers(0, 2, (6, 7)), num_classes=2, components=2, iterations=2)
    colours = distinct_colours(image)
    assert len(colours.values) == len(np.unique(image.reshape(-1, 3), axis=0))
    np.testing.assert_array_equal(colours.values[colours.index], image.astype(np.float64))
    np.testing.assert_allclose(log_likelihood(mix, image, colours=colours), log_likelihood(mix, image),
                               rtol=1e-12, atol=0)


def test_m_step_second_moments_equal_the_weighted_scatter():
    """The M-step's covariances from E[x x^T] - mu mu^T are the weighted scatter about the
    new means (+ the floor); an unused component keeps its Gaussian with weight 0."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (500, 3)).astype(np.float64)
    resp = rng.dirichlet(np.ones(4), 500).T  # (M, P)
    resp[3] = 0.0
    resp /= resp.sum(0, keepdims=True)
    means0, covs0 = rng.uniform(0, 255, (4, 3)), np.tile(np.eye(3) * 7.0, (4, 1, 1))
    weights, means, covs = _m_step(x, resp, means0, covs0)
    nk = resp.sum(1)
    np.testing.assert_allclose(weights, nk / nk.sum(), rtol=1e-12)
    for j in range(3):
        mu = resp[j] @ x / nk[j]
        d = x - mu
        np.testing.assert_allclose(means[j], mu, rtol=1e-12)
        np.testing.assert_allclose(covs[j], (resp[j, :, None] * d).T @ d / nk[j] + np.eye(3) * COV_FLOOR, rtol=1e-9)
    assert weights[3] == 0 and np.array_equal(means[3], means0[3]) and np.array_equal(covs[3], covs0[3])


def test_mixture_fit_separates_two_colours_and_warm_start_keeps_it():
    image, scribbles, truth = two_halves()
    mix = fit_mixtures(image, truth, num_classes=2, components=3, iterations=5)
    assert (log_likelihood(mix, image).argmax(0) == truth).all()
    again = fit_mixtures(image, truth, num_classes=2, components=3, iterations=2, init=mix)
    assert (log_likelihood(again, image).argmax(0) == truth).all()


def test_geodesic_distance_is_zero_on_strokes_and_grows_across_an_edge():
    image, scribbles, truth = two_halves(32, 64)
    d = geodesic_distances(image, scribbles, num_classes=2, size=64)
    assert d.shape == (2, 32, 64)
    assert (d[0][scribbles == 0] < 1e-3).all() and (d[1][scribbles == 1] < 1e-3).all()
    # crossing the red/blue edge costs ~230 RGB units: every pixel of the other half is
    # farther than any pixel of the stroke's own half
    assert d[0][truth == 1].min() > d[0][truth == 0].max()
    assert d[1][truth == 0].min() > d[1][truth == 1].max()
    prior = geodesic_prior(d, weight=2.0)
    assert prior.min() >= 0 and prior.max() <= 2.0 + 1e-9
    assert (prior[0][truth == 0] < prior[1][truth == 0]).mean() > 0.95


def test_geodesic_update_after_a_new_stroke_is_exact():
    """A class that only gained strokes: min(old, from the new pixels) == recomputed; a class
    that lost strokes is recomputed; an unchanged class is kept."""
    image, scribbles, _ = disc_scene(40, seed=1)
    before = coarse_distances(image, scribbles, num_classes=2, size=20)
    more = scribbles.copy()
    more[36, 5:30] = 0  # one more background stroke
    fewer = more.copy()
    fewer[2:38, 2] = 255  # and the first background stroke removed
    for edited in (more, fewer):
        update = coarse_distances(image, edited, num_classes=2, size=20, previous=before)
        fresh = coarse_distances(image, edited, num_classes=2, size=20)
        assert update.graph is before.graph
        np.testing.assert_allclose(update.distances, fresh.distances, rtol=1e-9, atol=1e-9)
    assert np.array_equal(update.distances[1], before.distances[1])


def test_stroke_pixels_keep_every_stroke_on_a_coarse_grid():
    scribbles = np.full((100, 100), 255, np.uint8)
    scribbles[50, 3:97] = 1  # a one-pixel line
    scribbles[7, 7] = 0
    small = stroke_pixels(scribbles, (10, 10))
    assert (small[5] == 1).sum() == 10 and small[0, 0] == 0
