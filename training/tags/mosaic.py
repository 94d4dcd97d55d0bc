"""Mosaic inputs for CAM classifier training: k x k augmented train crops tiled into one image.

    wsdeploy train --supervision tags --model classifier_resnet18 --mosaic 2 ...

Each training sample becomes a (k * crop, k * crop) image whose tiles are k² train images, each
augmented as usual (the sampler's image first, then k² - 1 drawn at random). The network sees
the whole mosaic, so a tile's CAMs are computed next to other images' content, but every tile is
scored on its own: its class scores are the CAMs' mean over its own tile of the CAM grid, and
the soft-margin loss compares them with that tile's own tags. The pooled area is one crop, as
at test time, so the scores keep their scale; what changes is the context, which no longer
tells the classifier which classes an image has (co-occurrence, one image's global look).

Determinism (the trainer's resume contract, `wsdeploy.training.data`): the extra images of slot
s are drawn from a generator seeded with (seed, s, stream), and tile t is augmented at sub-slot
s * k² + t, so a resumed run rebuilds the same mosaics.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from wsdeploy.training.tags.settings import MAX_MOSAIC

__all__ = ["MosaicAugmentation", "tile_scores"]

_STREAM = 0x6D6F73  # separates the extra-image draws from SeededAugmentation's generators


class MosaicAugmentation(Dataset):
    """k x k mosaics of a `SeededAugmentation`'s items.

    Args:
        augmented: a `wsdeploy.training.data.SeededAugmentation` whose transform crops every
            image to one square size and whose items have `tags` and no `label`.
        grid: k >= 2 tiles per side.
        seed: base seed of the extra-image draws.

    Items (keys are the sampler's `(index, slot)` pairs): `image` (k*H, k*W, 3) uint8, tile
    t = r * k + c at rows r*H.. and columns c*W..; `label` None; `tags` the sorted union of the
    tiles' tags; `tile_tags` the k² tiles' tag lists in tile order; `id` the tiles' ids joined by
    "+".
    """

    def __init__(self, augmented: Any, *, grid: int, seed: int) -> None:
        if isinstance(grid, bool) or not isinstance(grid, int) or not 2 <= grid <= MAX_MOSAIC:
            raise ValueError(f"grid must be an int in [2, {MAX_MOSAIC}], got {grid!r}")
        self.augmented = augmented
        self.grid = grid
        self.seed = seed

    def __len__(self) -> int:
        return len(self.augmented)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, slot = key
        g = self.grid
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, slot, _STREAM]))
        indices = [index, *rng.integers(0, len(self.augmented), size=g * g - 1).tolist()]
        tiles = [self.augmented[(i, slot * g * g + t)] for t, i in enumerate(indices)]
        for tile in tiles:
            if tile.get("label") is not None:
                raise ValueError("mosaics are for classifier training on tags: the items must have no label")
            if tile.get("tags") is None:
                raise ValueError(f"image {tile.get('id')!r} has no tags; a mosaic tile needs them")
        shapes = {tile["image"].shape for tile in tiles}
        if len(shapes) > 1:
            raise ValueError(f"mosaic tiles must share one size (crop them), got {sorted(shapes)}")
        rows = [np.concatenate([tiles[r * g + c]["image"] for c in range(g)], axis=1) for r in range(g)]
        tile_tags = [sorted(set(tile["tags"])) for tile in tiles]
        return {
            "image": np.ascontiguousarray(np.concatenate(rows, axis=0)),
            "label": None,
            "tags": sorted(set().union(*tile_tags)),
            "tile_tags": tile_tags,
            "id": "+".join(str(tile.get("id")) for tile in tiles),
        }


def tile_scores(cams: Tensor, grid: int) -> Tensor:
    """Per-tile class scores of mosaics: each tile's mean of the CAMs over its own cells.

    Args:
        cams: (B, K, h, w) float CAMs of B mosaics, h and w multiples of `grid`.
        grid: k tiles per side.

    Returns:
        (B * k², K) scores, row b * k² + t for tile t = r * k + c of mosaic b (the order of
        `MosaicAugmentation`'s `tile_tags`).

    Raises:
        ValueError: a CAM grid that does not split into k x k equal tiles.
    """
    b, k, h, w = cams.shape
    if h % grid or w % grid:
        raise ValueError(
            f"the CAM grid {h}x{w} does not split into {grid}x{grid} tiles; choose a crop size whose "
            f"CAM grid (crop / output stride) is a whole number of cells"
        )
    tiles = cams.reshape(b, k, grid, h // grid, grid, w // grid).mean(dim=(3, 5))  # (B, K, k, k)
    return tiles.permute(0, 2, 3, 1).reshape(b * grid * grid, k)
