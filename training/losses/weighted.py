"""`WeightedLoss`: the one `nn.Module` form of every regularizer.

Each regularizer is a pure function `loss(probs, image, valid, **settings) -> scalar`
(`dense_crf_loss`, `grid_potts_loss`, `normalized_cut_loss`, `entropy_loss`). Its module holds a
weight and the settings, checked once at construction, and returns `weight * loss(...)`:

    DenseCRFLoss(0.25, sigma_rgb=15.0)(probs, image, valid)     # == 0.25 * dense_crf_loss(...)

Shape (every subclass):
    - probs: (B, K, H, W) float, softmax over K, K >= 2.
    - image: (B, 3, H, W) uint8 or float RGB in 0-255 (de-normalised), on probs' device; ignored
      by the entropy loss.
    - valid: (B, H, W) bool, False on padding; None means every pixel is valid.
    - Output: () scalar in probs' dtype, already multiplied by `weight`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from wsdeploy.training.losses.checks import check_weight

__all__ = ["WeightedLoss"]


class WeightedLoss(nn.Module):
    """`weight * loss(probs, image, valid, **settings)`; subclasses set `loss` and check their
    settings before calling `super().__init__(weight, **settings)`.

    Args:
        weight: multiplier, >= 0.
        settings: keyword settings of `loss`, kept as attributes of the same names.
    """

    loss: ClassVar[Callable[..., torch.Tensor]]

    def __init__(self, weight: float, **settings: Any) -> None:
        super().__init__()
        self.weight = check_weight(weight)
        self._setting_names = tuple(settings)
        for name, value in settings.items():
            setattr(self, name, value)

    @property
    def settings(self) -> dict[str, Any]:
        """The settings passed to `loss`, by name."""
        return {name: getattr(self, name) for name in self._setting_names}

    def forward(
        self, probs: torch.Tensor, image: torch.Tensor | None = None,
        valid: torch.Tensor | None = None, **extra: Any,
    ) -> torch.Tensor:
        """`extra` goes to `loss` as is (e.g. `kernel=` for the dense losses)."""
        return self.weight * type(self).loss(probs, image, valid, **self.settings, **extra)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in {"weight": self.weight, **self.settings}.items())
