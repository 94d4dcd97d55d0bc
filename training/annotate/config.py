"""Settings of `wsdeploy.training.annotate`: one validated dataclass with commented defaults.

The defaults were chosen by global sweeps over the GrabCut-13 photographs (the same settings
for every image; mean foreground IoU on the `scribbles` / `scribbles-dense` sets, post-CRF on,
2-core CPU, 1 thread). Network: width 16 (0.792) beat 32 (0.715); 100 steps matched 200 (0.793
vs 0.792) at half the time; (x, y) input helped (0.792 vs 0.671 without).

Seeds matter more than those: the previous default (pCE only) scored 0.793 / 0.686 / 0.702 on
`scribbles` (0.818 / 0.726 / 0.644 dense) for seeds 0 / 1 / 2, mean 0.727 / 0.730: away from
the strokes the network extrapolates arbitrarily. Means over seeds 0-2 of what was tried:

- colour model (5 Gaussians per class on the strokes' RGB) fed as input channels: seeds 0-1
  0.803 / 0.739 (dense 0.819 / 0.724), still unstable; mixed into the unary before the CRF
  (weight 1): seed 0 0.777 / 0.845;
- **its posterior as a soft target on every pixel (`colour_loss`)** 0.3: 0.778 / 0.828,
  1.0: 0.775 / 0.825, **0.1: 0.783 / 0.836**; the three seeds now within 0.01 (sparse);
- GrabCut's "unlabelled = probably background" (class 0's mixture also fitted on every
  unlabelled pixel): 0.656 / 0.852, the short foreground strokes lose to it; dropped;
- geodesic distance to each class's strokes as input (seed 0): 0.633-0.697 / 0.620-0.704; dropped;
- on top of colour_loss 0.1: dense-CRF loss 0.25 0.754 / 0.793, grid Potts 0.25 0.788 / 0.842
  (+0.005 for +15% time; left off);
- **`keep_scribbled_regions`** (a class's connected region that no stroke of the class touches
  takes its next most probable class; the remaining errors were look-alike regions far from
  the strokes, e.g. the other headstones of `grave`): alone 0.801 / 0.781, with colour_loss
  0.1 **0.834 / 0.943** (seed 0: 0.840 / 0.957); with the colour input channels as well
  0.835 / 0.942 (not needed), with Potts 0.838 / 0.945, with the channels but no colour loss
  0.840 / 0.852 (seeds 0.855 / 0.805 / 0.860: unstable again).

Regularized losses fitted from scratch without the colour loss all lowered the score (dense
CRF 0.02 / 0.1 / 1.0: 0.743 / 0.671 / 0.629; grid Potts 0.25: 0.643; normalized cut 0.1:
0.502): the network fits the strokes and the pairwise term then shrinks the unlabelled region
to one class. They default to 0 and stay available; benchmarks/annotate.py reports the
ablation. Pass `AnnotateConfig(steps=200, ...)` to change.

The graph cut's defaults (method "graphcut", the `cut_*` fields) were chosen under the protocol
of issue 15 (benchmarks/annotate.py on GrabCut-13 and GrabCut-12, benchmarks/annotate_protocol.py):
among Potts weight gamma x geodesic-prior weight in {(50, 0), (50, 5), (50, 10), (50, 20),
(100, 5), (100, 20)} at cut_size 160, and from (100, 5) one lever of OpenCV's GrabCut at a time
(cut_size 240 or 320; cut_init="background" at gamma 50; cut_full_iterations=3), the best mean
of the two scribble sets on GrabCut-13 is (100, 5) at 240 px, 0.920 / 0.933 (sparse / dense;
160 px: 0.906 / 0.947, a 0.0003 smaller mean); on the twelve photographs it was not chosen on
it scores 0.792 / 0.926, against OpenCV GrabCut's 0.635 / 0.930 there (mean of 3 seeds):
better on the sparse strokes, still worse on the dense ones. Chosen on GrabCut-12 instead,
(100, 5) at 320 px scores 0.905 / 0.920 on GrabCut-13 (GrabCut 0.737 / 0.897). Over all 25
photographs the default gives 0.858 / 0.930 (GrabCut 0.688 / 0.913). GrabCut's first
background model: 0.884 / 0.946 and 0.735 / 0.926 (the dense sets gain, the sparse lose). The
graph cut is deterministic (no seed); 0.8-0.9 s of CPU per photograph at its own size
(median, at most 2.2 s), 1 thread.

Third round (issue 15): the geodesic paths also pay for changes of the class posterior under
colour models fitted on the strokes alone (cut_geodesic_likelihood; texture one class explains
costs nothing to cross). Among (posterior, RGB, prior weight) in {(100, 0, 5), (100, 0.25, 5),
(100, 1, 5), (300, 1, 5), (100, 1, 10)} from the 240-px default, GrabCut-13's best mean is
(100, 1, 10): 0.914 / 0.954 there, 0.824 / 0.929 on GrabCut-12 (GrabCut 0.635 / 0.930: the
dense set still loses by 0.002), 0.871 / 0.942 over all 25 (GrabCut + 0.183 / + 0.029), 1.0 s
of CPU per photograph (median, at most 1.7 s). Chosen on GrabCut-12 the rule still takes the
320-px row above. (100, 0, 5) does best on the dense sets (0.953 pooled) and worse on the
sparse ones (0.855): short strokes give a posterior that is wrong on the object's unstroked
colours.

Fourth round: cut_components 8 (against 5 and 3) is the rule's pick in both directions
(GrabCut-12 0.840 / 0.9304, GrabCut 0.635 / 0.9305; all 25 0.887 / 0.941); its 2.3-2.5 CPU-s
maxima were the lazy imports of the benchmark process's first call (timed warm: at most 1.26
CPU-s on GrabCut-13), so since the sixth round it is the default.

Fifth and sixth rounds (GrabCut-12's dense gap is one photo, 69020, where the colour refits
drift until both models are alike): the strokes' own colour posterior as a fixed unary
(cut_stroke_unary, with each likelihood floored at e^cut_stroke_floor so that a colour no
stroke shows carries no evidence), weight x floor in {(1, -13), (1, -15), (2, -13),
(0.5, -13), (1, no floor)}, then (1, -15) and (1, -13) with 8 Gaussians. (1, -15) alone
scores GrabCut-12 0.832 / 0.938 (all 25: GrabCut + 0.187 / + 0.032) but is not the rule's
pick on either folder. Among every row with <= 2 CPU-s per photo, GrabCut-13 picks 8
Gaussians (mean 0.940; on GrabCut-12 0.840 / 0.9304, GrabCut 0.635 / 0.9305: dense still
0.0001 below; all 25 GrabCut + 0.199 / + 0.027), the default; GrabCut-12 picks 8 Gaussians +
(1, -13) (0.8925; on GrabCut-13 0.925 / 0.951). The stroke term stays off (README, issue 15).

The network's defaults (above) were chosen on GrabCut-13 alone and lose to GrabCut on
GrabCut-12 (0.609 / 0.806, issue 15).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from wsdeploy.settings import real_number, settings_from_mapping

__all__ = ["AnnotateConfig"]

METHODS = ("graphcut", "network")
CUT_INITS = ("strokes", "background")
_INTS = ("size", "steps", "width", "depth", "crf_iterations", "colour_components", "cut_size",
         "cut_iterations", "cut_em_iterations", "cut_components", "cut_full_iterations")
_NONNEG = ("crf_weight", "potts_weight", "ncut_weight", "entropy_weight", "coord_scale",
           "scribble_confidence", "colour_loss", "cut_gamma", "cut_geodesic_weight", "cut_geodesic_colour",
           "cut_geodesic_likelihood", "cut_network_weight", "cut_stroke_unary")
_POSITIVE = ("lr", "sigma_xy", "sigma_rgb", "potts_sigma_rgb")


@dataclass(frozen=True)
class AnnotateConfig:
    """How `annotate` turns the scribbles of one image into a mask.

    Args:
        method: "graphcut" (`graphcut`: iterated colour-model graph cut by max-flow, the
            default; the `cut_*` fields) or "network" (the per-image network of `image`, the
            previous default; every other field).
        cut_size: long side of the graph cut's working resolution for its iterations, >= 8
            (the last cut runs at the image's own size).
        cut_gamma: weight of the contrast-sensitive Potts term (GrabCut's gamma), >= 0.
        cut_iterations: at most this many cuts (refitting the colour models between them), >= 1.
        cut_em_iterations: EM iterations of each colour-model refit, >= 0.
        cut_components: Gaussians per class of the graph cut's colour models, >= 1.
        cut_geodesic_weight: weight of the geodesic location prior d_c / sum d (0 = off), >= 0.
        cut_geodesic_colour: path cost per unit of RGB difference in that distance, >= 0.
        cut_geodesic_likelihood: path cost per unit of change of the class posterior under
            colour models fitted on the strokes alone (total-variation distance, in [0, 1]) in
            that distance, >= 0 (0 = off; `geodesic.stroke_posterior`).
        cut_network_weight: > 0 fits the per-image network first (the network fields below)
            and adds -cut_network_weight * log(its probabilities) to the unary, >= 0.
        cut_stroke_unary: weight of -log p(class | colour) under colour models fitted on the
            strokes alone (fixed while the refitted models drift), added to every cut's
            unary (0 = off), >= 0.
        cut_stroke_floor: log-density (RGB 0-255 units) added to each class's likelihood in
            that term, p_c + e^floor: a colour no stroke shows (every p_c << e^floor, e.g. an
            unstroked part of the object) carries no stroke evidence; a finite real number.
        cut_full_iterations: cuts at the photo's own size after the iterations at cut_size
            (each after a colour-model refit there), >= 1.
        cut_init: what the first colour models are fitted on: "strokes" (each class on its
            strokes) or "background" (GrabCut's rule: class 0 also on every unlabelled pixel).
        size: working resolution, the long side in pixels (the short side keeps the aspect
            ratio); images smaller than this are used as they are. >= 8.
        steps: Adam steps, >= 1.
        lr: Adam learning rate, > 0.
        width: channels of the network's hidden layers, >= 1.
        depth: dilated 3x3 convolutions (dilation 1, 2, 4, ... capped at 16), >= 1.
        coord_scale: multiplier of the normalised (x, y) in [-1, 1] fed to the network, >= 0
            (0 feeds colour only).
        crf_weight: weight of the dense-CRF (bilateral Potts) loss, >= 0.
        sigma_xy: its spatial standard deviation as a fraction of the working long side, > 0.
        sigma_rgb: its colour standard deviation, 0-255 units, > 0.
        potts_weight: weight of the 4-connected grid Potts loss, >= 0.
        potts_sigma_rgb: its colour standard deviation, 0-255 units, > 0.
        ncut_weight: weight of the normalized-cut loss (kernel of the dense-CRF loss), >= 0.
        entropy_weight: weight of the softmax entropy, >= 0.
        crf_iterations: mean-field iterations of the dense CRF run at full resolution on the
            fitted probabilities (`wsdeploy.crf.dense_crf`, library kernels), 0 = no CRF.
        scribble_confidence: before that CRF, scribbled pixels get this probability on their
            own class (the user's strokes are kept); 0 leaves the network's probabilities.
            0 or in (0, 1).
        colour_components: Gaussians per class of the colour model fitted on the scribbled
            pixels (`colour`, GrabCut's model), >= 0; 0 = no colour model.
        colour_loss: weight of the cross-entropy between the network's softmax and the colour
            model's class posterior on every working-resolution pixel, >= 0 (needs
            colour_components > 0).
        keep_scribbled_regions: after the CRF, every 8-connected region of a class that holds
            no stroke of that class takes its next most probable class (the connectivity prior
            of interactive segmentation: each object is touched by its strokes).
    """

    method: str = "graphcut"  # or "network" (the previous default)
    cut_size: int = 240  # long side of the graph cut's iterations, px (chosen on GrabCut-13, issue 15)
    cut_gamma: float = 100.0  # contrast-sensitive Potts weight (GrabCut's is 50)
    cut_iterations: int = 10  # cuts at most
    cut_em_iterations: int = 3  # EM iterations per colour-model refit
    cut_components: int = 8  # Gaussians per class (5 until issue 15's sixth round)
    cut_geodesic_weight: float = 10.0  # geodesic location prior, 0 = off (chosen on GrabCut-13, issue 15)
    cut_geodesic_colour: float = 1.0  # its path cost per RGB unit
    cut_geodesic_likelihood: float = 100.0  # its path cost per unit of the strokes' colour posterior, 0 = off
    cut_network_weight: float = 0.0  # the per-image network's -log p as one more unary, 0 = off
    cut_stroke_unary: float = 0.0  # -w log p(class | colour) under the strokes' own models, 0 = off
    cut_stroke_floor: float = -13.0  # its robust likelihood p_c + e^floor (nats)
    cut_full_iterations: int = 1  # cuts at the photo's own size after those at cut_size
    cut_init: str = "strokes"  # first colour models on: "strokes", or "background" (GrabCut's)
    size: int = 160  # long side of the working resolution, px
    steps: int = 100  # Adam steps
    lr: float = 0.01
    width: int = 16  # hidden channels
    depth: int = 5  # dilated 3x3 convs: dilations 1, 2, 4, 8, 16
    coord_scale: float = 1.0  # (x, y) in [-coord_scale, coord_scale]
    crf_weight: float = 0.0  # dense-CRF loss (0.25 is the library's suggestion for datasets)
    sigma_xy: float = 0.2  # fraction of the working long side
    sigma_rgb: float = 15.0  # 0-255 units (rloss)
    potts_weight: float = 0.0  # grid Potts loss
    potts_sigma_rgb: float = 15.0
    ncut_weight: float = 0.0  # normalized-cut loss
    entropy_weight: float = 0.0  # softmax entropy
    crf_iterations: int = 5  # full-resolution dense CRF after fitting, 0 = off
    scribble_confidence: float = 0.9  # scribbled pixels' probability before the CRF, 0 = off
    colour_components: int = 5  # Gaussians per class of the strokes' RGB colour model, 0 = off
    colour_loss: float = 0.1  # cross-entropy of the network to that model's posterior, every pixel
    keep_scribbled_regions: bool = True  # a class's connected region without its stroke is relabelled

    def __post_init__(self) -> None:
        for name in _INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if self.cut_init not in CUT_INITS:
            raise ValueError(f"cut_init must be one of {list(CUT_INITS)}, got {self.cut_init!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        minimum = {"size": 8, "steps": 1, "width": 1, "depth": 1, "crf_iterations": 0, "colour_components": 0,
                   "cut_size": 8, "cut_iterations": 1, "cut_em_iterations": 0, "cut_components": 1,
                   "cut_full_iterations": 1}
        for name, low in minimum.items():
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        real_number("cut_stroke_floor", self.cut_stroke_floor)
        for name in _NONNEG + _POSITIVE:
            value = real_number(name, getattr(self, name))
            if name in _POSITIVE and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not isinstance(self.keep_scribbled_regions, bool):
            raise TypeError(f"keep_scribbled_regions must be a bool, got {type(self.keep_scribbled_regions).__name__}")
        if not (self.scribble_confidence == 0 or 0 < self.scribble_confidence < 1):
            raise ValueError(f"scribble_confidence must be 0 or in (0, 1), got {self.scribble_confidence}")
        if self.method == "graphcut" and self.cut_network_weight == 0:
            changed = [f.name for f in fields(self) if not f.name.startswith("cut_") and f.name != "method"
                       and getattr(self, f.name) != f.default]
            if changed:  # they would be ignored: say so instead of silently running the graph cut
                raise ValueError(
                    f"{changed} set the per-image network, which method='graphcut' does not use; "
                    f"pass method='network' (the previous default) or cut_network_weight > 0"
                )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AnnotateConfig:
        """Build from a mapping; an unknown name raises ValueError listing the valid ones."""
        return settings_from_mapping(cls, values, what="annotate setting")

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (for results files)."""
        return asdict(self)
