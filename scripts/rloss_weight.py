"""Convert rloss's dense-CRF loss weight (2e-9, VOC, 513x513 crops) into this library's weight.

rloss's loss is unnormalised (weight_r * S^T W S); ours is divided by the kernel mass v^T W v of
the batch, so the equivalent weight is weight_r * mean kernel mass per image
(`wsdeploy.training.losses.kernel_mass`, see training/losses/dense.py). No VOC image reaches our
machines, so the mass is measured on photographs we have: centre crops (reflect-padded to the crop
when smaller) of every image in --images, at rloss's settings (sigma_rgb 15, sigma_xy 100,
scale 0.5). The `voc-deeplabv3plus-r101` preset (training/presets.py) uses the result.

    OMP_NUM_THREADS=1 python scripts/rloss_weight.py --images ../shared/data/grabcut13/images \
        --out benchmarks/results/rloss_weight.json
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from wsdeploy.training.losses import kernel_mass

from wsdeploy.atomic import atomic_write_text
from wsdeploy.data.image_io import read_image
from wsdeploy.data.index import IMAGE_SUFFIXES
from wsdeploy.environment import library_versions, machine_info

RLOSS_WEIGHT = 2e-9  # rloss's --densecrfloss for PASCAL VOC (pytorch-deeplab_v3_plus)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the centre crop, reflect-padded where the image is smaller."""
    h, w = image.shape[:2]
    pad_h, pad_w = max(0, size - h), max(0, size - w)
    if pad_h or pad_w:
        image = np.pad(image, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)), mode="reflect")
        h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder of photographs")
    parser.add_argument("--crop-size", type=int, default=513, help="rloss's crop (default 513)")
    parser.add_argument("--sigma-rgb", type=float, default=15.0)
    parser.add_argument("--sigma-xy", type=float, default=100.0)
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--out", required=True, help="results JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    masses = {}
    for path in paths:
        crop = centre_crop(read_image(path), args.crop_size)
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]  # (1, 3, S, S) uint8
        mass = kernel_mass(x, sigma_rgb=args.sigma_rgb, sigma_xy=args.sigma_xy, scale_factor=args.scale)
        masses[path.stem] = float(mass[0])
    mean = statistics.fmean(masses.values())
    weights = {k: RLOSS_WEIGHT * v for k, v in masses.items()}
    report = {
        "machine": machine_info(), "versions": library_versions(()), "threads": 1,
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "rloss_weight": RLOSS_WEIGHT, "crop_size": args.crop_size, "sigma_rgb": args.sigma_rgb,
        "sigma_xy": args.sigma_xy, "scale": args.scale, "images": len(paths),
        "kernel_mass_mean": mean, "kernel_mass_per_image": masses,
        "equivalent_weight": RLOSS_WEIGHT * mean,
        "equivalent_weight_range": [min(weights.values()), max(weights.values())],
    }
    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(f"{len(paths)} images: mean kernel mass {mean:.3g}; rloss {RLOSS_WEIGHT:g} -> {RLOSS_WEIGHT * mean:.3f} "
          f"(per image {min(weights.values()):.3f}-{max(weights.values()):.3f}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
