"""Fully connected CRF (Krähenbühl & Koltun 2011) and the bilateral filtering it shares with
the dense-CRF training loss, on a permutohedral lattice in plain torch ops (CPU and CUDA, no
compiled extension).

    from wsdeploy.crf import dense_crf, CRFParams, bilateral_filter
"""

from .filter import bilateral_filter
from .inference import dense_crf
from .params import CRFParams

__all__ = ["CRFParams", "bilateral_filter", "dense_crf"]
