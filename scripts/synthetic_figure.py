"""Draw the README figure of the synthetic benchmark: a few scenes with their masks and scribbles.

    python scripts/synthetic_figure.py                     # writes docs/synthetic_samples.png

Columns are scenes (seed 0, images 0..N-1 of ``generate_dataset``); rows are the image, the
dense mask in the class palette, and the scribbles drawn over the lightened image; a legend names
the classes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from wsdeploy.data.palette import colourise
from wsdeploy.data.synthetic import CLASSES, SyntheticConfig, image_seed, render_scene

REPO = Path(__file__).resolve().parents[1]


def figure(*, count: int, size: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB figure of ``count`` scenes."""
    config = SyntheticConfig(size=size)
    gap = 4
    columns = []
    for index in range(count):
        scene = render_scene(image_seed(seed, index), config=config)
        mask = colourise(scene.mask, len(CLASSES))
        scribbled = scene.scribbles != 255
        strokes = (scene.image * 0.4 + 150).astype(np.uint8)  # lightened, so dark classes show
        strokes[scribbled] = colourise(scene.scribbles, len(CLASSES))[scribbled]
        spacer = np.full((gap, size, 3), 255, np.uint8)
        columns.append(np.concatenate([scene.image, spacer, mask, spacer, strokes], axis=0))
        columns.append(np.full((columns[-1].shape[0], gap, 3), 255, np.uint8))
    grid = np.concatenate(columns[:-1], axis=1)
    return np.concatenate([grid, _legend(grid.shape[1])], axis=0)


def _legend(width: int) -> np.ndarray:
    colours = colourise(np.arange(len(CLASSES), dtype=np.uint8)[None], len(CLASSES))[0]
    strip = np.full((28, width, 3), 255, np.uint8)
    x = 6
    for name, colour in zip(CLASSES, colours, strict=True):
        cv2.rectangle(strip, (x, 8), (x + 12, 20), tuple(int(c) for c in colour), -1)
        cv2.putText(strip, name, (x + 16, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += 22 + 9 * len(name)
    return strip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=4, help="scenes (columns)")
    p.add_argument("--size", type=int, default=176, help="scene side in pixels")
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "synthetic_samples.png", help="output PNG")
    args = p.parse_args(argv)
    image = figure(count=args.count, size=args.size, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
