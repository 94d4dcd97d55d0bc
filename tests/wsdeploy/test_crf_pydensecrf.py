"""dense_crf against pydensecrf (the C++ reference) on the GrabCut-13 photographs.

Inputs are network-like: the ground truth turned into 21-class logits, with per-class noise,
blurred (a network is smooth and unsure near edges) and softmaxed; images are downscaled to
256 px on the long side to keep the test fast (benchmarks/crf.py checks full sizes).
pydensecrf runs with the same kernels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


from wsdeploy.crf import CRFParams, dense_crf

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "grabcut13"  # shared/ beside the checkout
NAMES = sorted(p.stem for p in (DATA / "images").glob("*.jpg")) if DATA.is_dir() else []
FOREGROUND_CLASS = 15  # any of the 20 object classes; the others stay absent
NUM_CLASSES = 21


def network_like_probs(mask: np.ndarray, *, seed: int, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(H, W) mask (0 bg, 1 fg, 255 unknown) -> (K, H, W) float32 softmax probabilities."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = mask.shape
    target = np.zeros((num_classes, h, w), np.float32)
    target[0] = mask == 0
    target[FOREGROUND_CLASS] = mask == 1
    target[[0, FOREGROUND_CLASS]] += 0.5 * (mask == 255)
    logits = 4.0 * target + rng.normal(0.0, 1.5, target.shape).astype(np.float32)
    sigma = max(h, w) / 60.0
    logits = np.stack([cv2.GaussianBlur(c, (0, 0), sigma) for c in logits])
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0)).astype(np.float32)


def pydensecrf_reference(image: np.ndarray, probs: np.ndarray, params: CRFParams) -> np.ndarray:
    dcrf = pytest.importorskip("pydensecrf.densecrf")
    utils = pytest.importorskip("pydensecrf.utils")
    k, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(np.ascontiguousarray(utils.unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=params.gaussian_sigma_xy, compat=params.gaussian_weight)
    crf.addPairwiseBilateral(
        sxy=params.bilateral_sigma_xy, srgb=params.bilateral_sigma_rgb,
        rgbim=np.ascontiguousarray(image), compat=params.bilateral_weight,
    )
    return np.asarray(crf.inference(params.iterations)).reshape(k, h, w)


@pytest.mark.slow
@pytest.mark.skipif(not NAMES, reason=f"GrabCut-13 not found at {DATA}")
def test_labels_agree_with_pydensecrf_on_grabcut() -> None:
    pytest.importorskip("pydensecrf.densecrf")
    import cv2

    params = CRFParams()
    agreements, changed = [], []
    for i, name in enumerate(NAMES):
        image = cv2.cvtColor(cv2.imread(str(DATA / "images" / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(DATA / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        scale = 256.0 / max(image.shape[:2])
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        probs = network_like_probs(mask, seed=i)
        ours = dense_crf(image, probs, **params.as_dict()).argmax(0)
        ref = pydensecrf_reference(image, probs, params).argmax(0)
        agreements.append(float((ours == ref).mean()))
        changed.append(float((ref != probs.argmax(0)).mean()))
    assert min(agreements) >= 0.97, dict(zip(NAMES, agreements))
    # The CRF must actually do something on these inputs, or agreement means nothing.
    assert max(changed) > 0.005, dict(zip(NAMES, changed))
