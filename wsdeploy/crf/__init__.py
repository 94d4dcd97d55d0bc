"""Fully connected CRF (Krähenbühl & Koltun 2011) and the bilateral filtering it shares with
the dense-CRF training loss, on a permutohedral lattice in plain torch ops (CPU and CUDA, no
compiled extension).

    from wsdeploy.crf import dense_crf, CRFParams, bilateral_filter, BilateralKernel

    kernel = BilateralKernel(images, sigma_xy=80.0, sigma_rgb=13.0)   # (B, 3, H, W): build once
    out = kernel(values)                                              # apply many times
"""

from wsdeploy.crf.filter import bilateral_filter
from wsdeploy.crf.inference import dense_crf
from wsdeploy.crf.kernel import BilateralKernel
from wsdeploy.crf.params import CRFParams

__all__ = ["BilateralKernel", "CRFParams", "bilateral_filter", "dense_crf"]
