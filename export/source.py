"""What an export starts from: a checkpoint path, or a model plus its card."""
from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from wsdeploy.checkpoint import ModelCard, load_checkpoint

__all__ = ["ExportSource", "resolve_source"]

ExportSource = str | os.PathLike | nn.Module


def resolve_source(source: ExportSource, card: ModelCard | None) -> tuple[nn.Module, ModelCard]:
    """(model in eval mode on the CPU, card) from a checkpoint path or a module + card.

    Raises:
        ValueError: a bad checkpoint, a module without a card, or a module without the
            segmentation-model attributes `input_multiple` and `logit_stride`.
        TypeError: `source` is neither a path nor an `nn.Module`, or `card` is not a `ModelCard`.
    """
    if isinstance(source, (str, os.PathLike)):
        if card is not None:
            raise ValueError("pass card= only with a model; a checkpoint carries its own card")
        model, card = load_checkpoint(Path(source))
    elif isinstance(source, nn.Module):
        if card is None:
            raise ValueError("exporting a model object needs its card=ModelCard(...) (it goes into the export)")
        if not isinstance(card, ModelCard):
            raise TypeError(f"card must be a wsdeploy.checkpoint.ModelCard, got {type(card).__name__}")
        model = source
    else:
        raise TypeError(f"expected a checkpoint path or an nn.Module, got {type(source).__name__}")
    for attr in ("input_multiple", "logit_stride"):
        if not isinstance(getattr(model, attr, None), int):
            raise ValueError(
                f"{type(model).__name__} has no integer {attr!r}: only segmentation models "
                "(deeplabv3plus_*, lraspp_*) export; classifiers have no logits map"
            )
    return model.eval().cpu().float(), card
