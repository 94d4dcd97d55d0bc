"""The graph-cut method of `annotate`: GrabCut's iterated colour-model graph cut, seeded by the
strokes instead of a box, with an optional geodesic location prior.

    E(x; theta) = sum_p [-log p(I_p | theta_{x_p}) + prior_{x_p}(p) + stroke_{x_p}(p) + hard_{x_p}(p)]
                  + sum_{p~q} gamma / |p - q| exp(-beta |I_p - I_q|^2) [x_p != x_q]

- theta: one RGB Gaussian mixture per class (`mixture`), first fitted on that class's strokes
  only (cfg.cut_init="strokes"). GrabCut (and OpenCV's `grabCut` with a mask) also fits the
  background on every unlabelled pixel ("background"): background colours no stroke covers
  are then modelled, but the object's own colours enter the background model too, which loses
  the unscribbled parts of an object when its strokes are short (issue 15 measures both);
- hard: the strokes are kept (`_HARD` on every other class at a scribbled pixel);
- prior: `geodesic.geodesic_prior`, cfg.cut_geodesic_weight * d_c / sum d (0 = off), the
  paths' cost from RGB differences (cfg.cut_geodesic_colour) and changes of the strokes' colour
  posterior (cfg.cut_geodesic_likelihood);
- stroke: cfg.cut_stroke_unary * -log p(class | I_p) under mixtures fitted on the strokes
  alone, each class's likelihood made robust as p_c + e^cfg.cut_stroke_floor (0 = off). It
  does not change with theta: when the refits drift (GC-12's 69020 with dense strokes: the
  foreground's mixture takes a grass component, the two models end nearly identical and the
  geodesic prior alone shapes the mask), the strokes' own colour evidence still holds the
  cut; where no stroke shows a colour (an unstroked part of the object), the floor leaves
  it at log K for every class, so the refits still learn it;
- pairwise: `grid.contrast_weights`, 8-connected.

Bound-optimisation / block-coordinate descent on (x, theta), as GrabCut: cut x with theta
fixed (exact by max-flow for K = 2, alpha-expansion for K > 2), refit theta on x by EM from the
previous theta, keep the refit only if it does not raise E(x; .), stop when x stops changing
or after cfg.cut_iterations cuts. E never increases (`CutState.energies`). The iterations run
at cfg.cut_size on the long side (area-resized image, every stroke kept); one last cut at the
photo's own resolution with the final theta gives the mask (cfg.cut_full_iterations > 1:
that many refits and cuts there).

A warm start (`previous=`) reuses the image's pairwise weights and the classes' geodesic
distances (a class that only gained strokes takes the minimum of its old distances and those
from the new pixels, exact), and descends once from the previous theta and labels (the new
strokes imposed) instead of fitting the strokes afresh: adding a stroke costs a few cuts at
the working size and the one at full size. For K = 2 those cuts run on the previous call's
graphs (`grid.BinaryCut`, kept in the state), which only change their terminal links and
resume max-flow from the flow they hold: exact, without rebuilding a graph (the full-size
graph was half of an update's time). The colour log-likelihoods (fresh or warm) are evaluated
once per distinct colour (`mixture.distinct_colours`, found by the first call and kept in the
state; the same values as per pixel). The result is the fresh run's when both descents reach
the same fixed point; from two starts the alternation can also stop in two different local
minima of the same energy (benchmarks/annotate_incremental.py counts how often).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from scipy.special import logsumexp

from wsdeploy.training.annotate.config import AnnotateConfig
from wsdeploy.training.annotate.geodesic import Coarse, coarse_distances, geodesic_prior, stroke_pixels, upsample
from wsdeploy.training.annotate.grid import BinaryCut, contrast_weights, energy, minimise
from wsdeploy.training.annotate.mixture import Colours, Mixtures, distinct_colours, fit_mixtures, log_likelihood

__all__ = ["CutState", "graph_cut"]

UNLABELLED = 255
_HARD = 1e6  # unary of another class on a scribbled pixel
_FIRST_EM = 8  # EM iterations of the first fit on the strokes (later refits: cfg.cut_em_iterations)


@dataclass
class CutState:
    """What a warm start needs, and the fit's trace.

    Attributes:
        image_shape: (H, W) of the photograph.
        work: (h, w) working resolution of the iterations.
        edges: pairwise weights at (h, w) (`grid.contrast_weights`).
        edges_full: the same at (H, W), None when (h, w) == (H, W).
        mixtures: the final colour models.
        labels: (h, w) uint8 labels of the last working-resolution cut.
        energies: E after every working-resolution cut, non-increasing.
        image_key: a digest of the image, to refuse a warm start on another photograph.
        gamma: the Potts weight `edges` were built with.
        geodesic: the coarse geodesic distances (updated, not recomputed, after a new stroke).
        geodesic_colour: the colour weight they were computed with.
        geodesic_likelihood: the posterior weight they were computed with (> 0: their graph
            depends on every stroke and is rebuilt by a warm start).
        cut: the working grid's s-t graph of the last cut (K = 2), reused by a warm start;
            shared with (and changed by) the states warm-started from this one. The two
            graphs hold about 330 bytes per pixel of their grids while the state is alive
            (115 MB for a 640 x 480 photograph).
        cut_full: the same at (H, W), None when (h, w) == (H, W) or K > 2.
        colours: the photograph's distinct colours (`mixture.distinct_colours`), found by the
            first call and kept for every warm start; None when (h, w) == (H, W).
        colours_work: the same for the working-resolution image.
    """

    image_shape: tuple[int, int]
    work: tuple[int, int]
    edges: list[np.ndarray]
    edges_full: list[np.ndarray] | None
    mixtures: Mixtures
    labels: np.ndarray
    energies: list[float] = field(default_factory=list)
    image_key: tuple = ()
    gamma: float = 0.0
    geodesic: Coarse | None = None
    geodesic_colour: float = 0.0
    geodesic_likelihood: float = 0.0
    cut: BinaryCut | None = None
    cut_full: BinaryCut | None = None
    colours: Colours | None = None
    colours_work: Colours | None = None


def _image_key(rgb: np.ndarray) -> tuple:
    return rgb.shape, float(rgb[::7, ::7].astype(np.float64).sum())


def _hard(scribbles: np.ndarray, k: int) -> np.ndarray:
    """(K, H, W) float64: _HARD on every class but the scribbled one at scribbled pixels."""
    out = np.zeros((k, *scribbles.shape))
    labelled = scribbles != UNLABELLED
    for c in range(k):
        out[c][labelled & (scribbles != c)] = _HARD
    return out


def _resize_stack(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    return np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_AREA) for c in a.astype(np.float32)])


def graph_cut(
    rgb: np.ndarray, scribbles: np.ndarray, k: int, cfg: AnnotateConfig, *, seed: int = 0,
    previous: CutState | None = None, extra_unary: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, CutState, dict[str, float]]:
    """Run the method on one photograph (inputs already checked by `annotate`).

    Args:
        rgb: (H, W, 3) uint8.
        scribbles: (H, W) uint8 class indices, 255 unlabelled.
        k: number of classes.
        cfg: settings (the `cut_*` fields).
        seed: unused: the graph cut is deterministic (kept for the common signature).
        previous: the state of an earlier call on the same photograph (warm start).
        extra_unary: (K, H, W) float64 added to the unary (e.g. the network's -w log p), or None.

    Returns:
        labels (H, W) uint8, probs (K, H, W) float32 (the unary's posterior softmax(-U), whose
        argmax ignores the pairwise term), the new state, and {"energy", "cuts", ...}.
    """
    height, width = scribbles.shape
    key = _image_key(rgb)
    if previous is not None and (previous.image_key != key or previous.mixtures.weights.shape[0] != k):
        raise ValueError("previous= is the state of another photograph or class count; "
                         "warm-start only on the photograph (and K) it came from")
    scale = min(1.0, cfg.cut_size / max(height, width))
    work = (max(1, round(height * scale)), max(1, round(width * scale)))
    small = rgb if work == (height, width) else cv2.resize(rgb, work[::-1], interpolation=cv2.INTER_AREA)
    small_scribbles = scribbles if work == (height, width) else stroke_pixels(scribbles, work)
    same_grid = previous is not None and previous.work == work and previous.gamma == cfg.cut_gamma
    if same_grid:
        edges, edges_full = previous.edges, previous.edges_full
    else:
        edges = contrast_weights(small, gamma=cfg.cut_gamma)
        edges_full = None if work == (height, width) else contrast_weights(rgb, gamma=cfg.cut_gamma)

    prior_full = np.zeros((k, height, width))
    coarse = None
    if cfg.cut_geodesic_weight > 0:
        same_metric = previous is not None and (previous.geodesic_colour, previous.geodesic_likelihood) == (
            cfg.cut_geodesic_colour, cfg.cut_geodesic_likelihood)
        reuse = previous.geodesic if same_metric else None
        coarse = coarse_distances(rgb, scribbles, num_classes=k, colour_weight=cfg.cut_geodesic_colour,
                                  likelihood_weight=cfg.cut_geodesic_likelihood, components=cfg.cut_components,
                                  previous=reuse)
        prior_full = geodesic_prior(upsample(coarse, (height, width)), weight=cfg.cut_geodesic_weight)
    if extra_unary is not None:
        prior_full = prior_full + extra_unary
    prior = prior_full if work == (height, width) else _resize_stack(prior_full, work).astype(np.float64)
    fixed = prior + _hard(small_scribbles, k)  # (K, h, w): everything of U but the colour term

    # the mixtures are evaluated once per distinct colour (found once per photograph, kept in the state)
    colours_work = (previous.colours_work if same_grid and previous.colours_work is not None
                    else distinct_colours(small))
    stroke_mix = None
    if cfg.cut_stroke_unary > 0:  # -w log p(class | colour) under the strokes' own models, every cut
        stroke_mix = fit_mixtures(small, small_scribbles, num_classes=k, components=cfg.cut_components,
                                  iterations=_FIRST_EM)
        fixed = fixed + cfg.cut_stroke_unary * _stroke_unary(
            log_likelihood(stroke_mix, small, colours=colours_work), cfg.cut_stroke_floor)
    if previous is None:  # fresh: the first colour models (`_first_labels`), a cut, the descent
        start = stroke_mix if stroke_mix is not None and cfg.cut_init == "strokes" else fit_mixtures(
            small, _first_labels(small_scribbles, cfg.cut_init), num_classes=k, components=cfg.cut_components,
            iterations=_FIRST_EM)
        start_unary = fixed - log_likelihood(start, small, colours=colours_work)
        first, cut = _cut(start_unary, edges, init=None, reuse=None)
        mix, unary, labels, energies, cuts, cut = _descend(small, fixed, edges, start, start_unary,
                                                           first, cut, cfg, k, dynamic=False,
                                                           colours=colours_work)
    else:
        # warm: one descent from the previous fit and labels (the strokes kept), no fresh fit;
        # when that descent converges to the fresh run's fixed point, the two masks agree
        init = previous.labels if previous.work == work else cv2.resize(
            previous.labels, work[::-1], interpolation=cv2.INTER_NEAREST)
        init = np.where(small_scribbles == UNLABELLED, init, small_scribbles).astype(np.uint8)
        start_unary = fixed - log_likelihood(previous.mixtures, small, colours=colours_work)
        first, cut = _cut(start_unary, edges, init=init, reuse=previous.cut if same_grid else None)
        mix, unary, labels, energies, cuts, cut = _descend(small, fixed, edges, previous.mixtures, start_unary,
                                                           first, cut, cfg, k, dynamic=True,
                                                           colours=colours_work)

    warm = previous is not None
    cut_full, colours = None, None
    if edges_full is None:
        full_labels, full_unary = labels, unary
    else:
        fixed_full = prior_full + _hard(scribbles, k)
        colours = previous.colours if warm and previous.colours is not None else distinct_colours(rgb)
        if stroke_mix is not None:
            fixed_full += cfg.cut_stroke_unary * _stroke_unary(log_likelihood(stroke_mix, rgb, colours=colours),
                                                               cfg.cut_stroke_floor)
        full_unary = fixed_full - log_likelihood(mix, rgb, colours=colours)
        full_labels, cut_full = _cut(full_unary, edges_full,
                                     init=cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST),
                                     reuse=previous.cut_full if warm and same_grid else None)
        if cfg.cut_full_iterations > 1:  # more refits and cuts at the photo's own size
            _, full_unary, full_labels, _, more, cut_full = _descend(
                rgb, fixed_full, edges_full, mix, full_unary, full_labels, cut_full,
                replace(cfg, cut_iterations=cfg.cut_full_iterations), k, dynamic=warm, colours=colours)
            cuts += more - 1
    probs = _posterior(full_unary)
    state = CutState(image_shape=(height, width), work=work, edges=edges, edges_full=edges_full,
                     mixtures=mix, labels=labels, energies=energies, image_key=key,
                     gamma=cfg.cut_gamma, geodesic=coarse, geodesic_colour=cfg.cut_geodesic_colour,
                     geodesic_likelihood=cfg.cut_geodesic_likelihood,
                     cut=cut, cut_full=cut_full, colours=colours, colours_work=colours_work)
    return full_labels, probs, state, {"energy": energies[-1], "cuts": float(cuts)}


def _cut(unary: np.ndarray, edges: list[np.ndarray], *, init: np.ndarray | None,
         reuse: BinaryCut | None) -> tuple[np.ndarray, BinaryCut | None]:
    """Minimise E once: K = 2 by max-flow on `reuse`'s graph (a dynamic cut) or on a new one,
    K > 2 by alpha-expansion from `init`. Returns the labels and the graph a next cut can reuse."""
    if unary.shape[0] != 2:
        return minimise(unary, edges, init=init), None
    cut = reuse if reuse is not None else BinaryCut(edges)
    return cut.solve(unary), cut


def _descend(small: np.ndarray, fixed: np.ndarray, edges: list[np.ndarray], mix: Mixtures,
             unary: np.ndarray, labels: np.ndarray, cut: BinaryCut | None, cfg: AnnotateConfig, k: int,
             *, dynamic: bool, colours: Colours | None = None) -> tuple:
    """Block-coordinate descent from a first cut `labels` of `unary` (= fixed - log p(. | mix)):
    refit theta on x (kept only if E does not rise), cut x, until x stops changing or
    cfg.cut_iterations cuts. dynamic: every cut reuses `cut`'s graph (the warm start), else
    each builds its own (the fresh run, as before graphs were kept). colours: `small`'s
    distinct colours, to evaluate each refit once per colour, or None (every pixel).
    Returns (mix, unary, labels, energies, cuts, the graph of the last cut)."""
    energies, cuts = [energy(labels, unary, edges)], 1
    while True:
        refit = fit_mixtures(small, labels, num_classes=k, components=mix.weights.shape[1],
                             iterations=cfg.cut_em_iterations, init=mix)
        refit_unary = fixed - log_likelihood(refit, small, colours=colours)
        if energy(labels, refit_unary, edges) > energies[-1]:
            break  # the refit would raise E(labels; .): theta is as good as EM gets it
        mix, unary = refit, refit_unary  # the last refit is kept even when no cut follows
        if cuts >= cfg.cut_iterations:
            break
        new, cut = _cut(unary, edges, init=labels, reuse=cut if dynamic else None)
        cuts += 1
        energies.append(energy(new, unary, edges))
        if np.array_equal(new, labels):
            break
        labels = new
    return mix, unary, labels, energies, cuts, cut


def _first_labels(scribbles: np.ndarray, rule: str) -> np.ndarray:
    """The labelling the first colour models are fitted on: (h, w) uint8, 255 = used by no class.
    "strokes": the strokes alone; "background": GrabCut's rule, every unlabelled pixel also
    fits class 0 (the background)."""
    if rule == "background":
        return np.where(scribbles == UNLABELLED, 0, scribbles).astype(np.uint8)
    return scribbles


def _stroke_unary(ll: np.ndarray, floor: float) -> np.ndarray:
    """-log p(class | colour) with equal class priors under the robust likelihoods p_c + e^floor,
    from the strokes' log-likelihoods ll (K, H, W): (K, H, W) float64 >= 0, near log K at a
    colour no stroke shows (every p_c << e^floor)."""
    ll = np.logaddexp(ll, floor)
    return logsumexp(ll, axis=0, keepdims=True) - ll


def _posterior(unary: np.ndarray) -> np.ndarray:
    """softmax(-U) over K: (K, H, W) float32, strokes (U = _HARD elsewhere) one-hot."""
    z = -(unary - unary.min(0, keepdims=True))
    p = np.exp(np.maximum(z, -80.0))
    return (p / p.sum(0, keepdims=True)).astype(np.float32)

