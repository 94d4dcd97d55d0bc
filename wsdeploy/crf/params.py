"""Dense-CRF parameters: one validated, frozen dataclass shared by `dense_crf`, `wsdeploy.load`
and the CLI, so a dict of settings is checked by name in one place."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from wsdeploy.settings import real_number, settings_from_mapping

__all__ = ["CRFParams"]


@dataclass(frozen=True)
class CRFParams:
    """Mean-field dense CRF settings (Krähenbühl & Koltun 2011), Potts compatibility.

    The defaults are the kernel settings of Krähenbühl's own densecrf example, also the
    pydensecrf README's: bilateral w=10, sigma_xy=80, sigma_rgb=13; Gaussian w=3, sigma_xy=3
    (DeepLab tunes w in 3-5 and the sigmas per dataset; they are arguments, not constants).

    Args:
        iterations: mean-field iterations, >= 0 (0 returns the clipped, renormalised input).
        bilateral_weight: weight of the appearance kernel, >= 0.
        bilateral_sigma_xy: its spatial standard deviation in pixels, > 0.
        bilateral_sigma_rgb: its colour standard deviation in uint8 intensity units, > 0.
        gaussian_weight: weight of the smoothness (position-only) kernel, >= 0.
        gaussian_sigma_xy: its spatial standard deviation in pixels, > 0.
    """

    iterations: int = 10
    bilateral_weight: float = 10.0
    bilateral_sigma_xy: float = 80.0
    bilateral_sigma_rgb: float = 13.0
    gaussian_weight: float = 3.0
    gaussian_sigma_xy: float = 3.0

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, numbers.Integral):
            raise TypeError(f"iterations must be an int, got {type(self.iterations).__name__}")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        for name in ("bilateral_weight", "gaussian_weight"):
            value = real_number(name, getattr(self, name))
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name in ("bilateral_sigma_xy", "bilateral_sigma_rgb", "gaussian_sigma_xy"):
            value = real_number(name, getattr(self, name))
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> "CRFParams":
        """Build from a mapping of field names; an unknown name raises ValueError listing the valid ones."""
        return settings_from_mapping(cls, params, what="CRF parameter")

    def as_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict (e.g. for a model card or `dense_crf(**...)`)."""
        return asdict(self)
