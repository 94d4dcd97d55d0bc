"""Synthetic weak-supervision benchmark: scenes with dense masks, scribbles and image tags.

No real dataset or pretrained weight is available on our machines, so this generator stands in
for photographs where weak supervision matters: 4 stuff classes and 5 object classes whose
colours come from one shared distribution (identity needs texture and shape), region
boundaries that are always visible colour edges, occlusion, irregular outlines, varying scale,
lighting and noise. See ``config`` for the class list and ``scene`` for the recipe.

Dataset folder written by :func:`generate_dataset` (DESIGN.md "Data formats")::

    images/{id}.png        RGB, lossless PNG by default (labels align with exact pixels and the
                           bytes are reproducible); ``image_format="jpg"`` writes quality-95 JPEG
    masks/{id}.png         uint8 class indices (this generator never writes 255 = ignore)
    scribbles/{id}.png     uint8 class index on scribbled pixels, 255 elsewhere (~3% labelled)
    tags.txt               "{id} name name ..." per image: every class present in the mask,
                           stuff classes included (there is no "background" class)
    classes.txt            one class name per line, index = line number (0 = "sky")
    splits/train.txt, splits/val.txt   ids, one per line (train first, val = the last ids)
    dataset.json           manifest written last: generator version, seed, config, statistics

Image ``index`` is rendered from ``np.random.default_rng(np.random.SeedSequence([seed, index]))``,
so the output does not depend on the number of worker processes. Every file is written to a
temporary name and renamed; a folder without ``dataset.json`` is an interrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from wsdeploy.atomic import atomic_write_text
from wsdeploy.data.synthetic.config import CLASSES, GENERATOR_VERSION, STUFF_CLASSES, THING_CLASSES, SyntheticConfig
from wsdeploy.data.synthetic.scene import Scene, render_scene
from wsdeploy.version import __version__

__all__ = [
    "CLASSES", "STUFF_CLASSES", "THING_CLASSES", "GENERATOR_VERSION", "SyntheticConfig", "Scene",
    "render_scene", "image_seed", "generate_dataset",
]

logger = logging.getLogger(__name__)

_OWNED = ("dataset.json", "images", "masks", "scribbles", "splits", "tags.txt", "classes.txt")
# noisy images barely compress: PNG level 1 is 2x faster than 6 and <4% larger; labels use 6
_IMAGE_FORMATS = {"png": [cv2.IMWRITE_PNG_COMPRESSION, 1], "jpg": [cv2.IMWRITE_JPEG_QUALITY, 95]}
_LABEL_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 6]


def image_seed(seed: int, index: int) -> np.random.Generator:
    """The generator that renders image ``index`` of a dataset made with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def generate_dataset(
    out_dir: str | os.PathLike,
    *,
    num_images: int = 1000,
    seed: int = 0,
    val_fraction: float = 0.2,
    config: SyntheticConfig | None = None,
    size: int | None = None,
    scribble_width: int | None = None,
    scribble_coverage: float | None = None,
    image_format: str = "png",
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    command: str | None = None,
) -> Path:
    """Render a synthetic dataset into ``out_dir`` (layout in the module docstring).

    Args:
        out_dir: target folder; created if missing. It must be empty unless ``overwrite``.
        num_images: images in total, >= 1.
        seed: int >= 0; the same seed and settings give byte-identical files.
        val_fraction: share of images in ``splits/val.txt`` (the last ids), in [0, 1).
        config: scene and annotation settings, ``SyntheticConfig()`` if None.
        size, scribble_width, scribble_coverage: if given, override those ``config`` fields.
        image_format: "png" (lossless, default) or "jpg" (quality 95, about 4x smaller).
        workers: processes rendering in parallel; None = one per available CPU (at most 8),
            0 or 1 = in this process. More than one uses the "spawn" start method, so a script
            calling this needs the usual ``if __name__ == "__main__":`` guard.
        overwrite: replace a previous dataset in ``out_dir``: the entries listed above are
            deleted first (``dataset.json`` first of all); other files are left alone.
        progress: called as ``progress(done, total)`` after every image.
        command: the command line that produced the dataset, recorded in the manifest.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ValueError: a bad argument value. FileExistsError: ``out_dir`` is not empty and
        ``overwrite`` is False.
    """
    config = SyntheticConfig() if config is None else config
    if not isinstance(config, SyntheticConfig):
        raise TypeError(f"config must be a SyntheticConfig, got {type(config).__name__}")
    overrides = {"size": size, "scribble_width": scribble_width, "scribble_coverage": scribble_coverage}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be an int >= 1, got {num_images!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    num_val = int(round(num_images * val_fraction))
    if val_fraction > 0 and num_val == 0 or num_val >= num_images:
        raise ValueError(
            f"val_fraction={val_fraction!r} of num_images={num_images} leaves {num_val} val and "
            f"{num_images - num_val} train images; both splits need at least one (or use val_fraction=0)"
        )
    if image_format not in _IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {sorted(_IMAGE_FORMATS)}, got {image_format!r}")
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be None or an int >= 0, got {workers!r}")

    out = Path(out_dir)
    _prepare(out, overwrite=overwrite)
    width = max(6, len(str(num_images - 1)))
    ids = [f"{i:0{width}d}" for i in range(num_images)]
    jobs = [(i, ids[i], seed, config, str(out), image_format) for i in range(num_images)]

    results: list[dict] = [{}] * num_images
    if min(workers, num_images) <= 1:
        for done, job in enumerate(jobs, start=1):
            result = _render_and_write(job)
            results[result["index"]] = result
            if progress is not None:
                progress(done, num_images)
    else:
        chunk = max(1, min(16, num_images // (4 * workers)))
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(processes=min(workers, num_images), initializer=_init_worker) as pool:
            for done, result in enumerate(pool.imap_unordered(_render_and_write, jobs, chunksize=chunk), start=1):
                results[result["index"]] = result
                if progress is not None:
                    progress(done, num_images)

    atomic_write_text(out / "classes.txt", "".join(f"{name}\n" for name in CLASSES))
    atomic_write_text(out / "tags.txt", "".join(f"{r['id']} {' '.join(CLASSES[c] for c in r['classes'])}\n" for r in results))
    (out / "splits").mkdir(exist_ok=True)
    atomic_write_text(out / "splits" / "train.txt", "".join(f"{i}\n" for i in ids[: num_images - num_val]))
    atomic_write_text(out / "splits" / "val.txt", "".join(f"{i}\n" for i in ids[num_images - num_val :]))
    if hasattr(os, "sync"):
        os.sync()  # every file on disk before the manifest that declares the dataset complete
    atomic_write_text(out / "dataset.json", json.dumps(_manifest(results, config, seed, num_val, image_format, command), indent=2) + "\n")
    logger.info("wrote %d synthetic images to %s", num_images, out)
    return out


def _prepare(out: Path, *, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out_dir {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    entries = sorted(p.name for p in out.iterdir())
    if entries and not overwrite:
        raise FileExistsError(
            f"out_dir {str(out)!r} is not empty ({', '.join(entries[:5])}{', ...' if len(entries) > 5 else ''}); "
            "pass overwrite=True (CLI: --overwrite) to replace a previous dataset"
        )
    for name in _OWNED:  # dataset.json first: an interrupted overwrite stays detectable
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for sub in ("images", "masks", "scribbles"):
        (out / sub).mkdir()


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; avoid oversubscription


def _render_and_write(job: tuple) -> dict:
    index, image_id, seed, config, out, image_format = job
    scene = render_scene(image_seed(seed, index), config=config)
    out = Path(out)
    bgr = cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)
    _write_image(out / "images" / f"{image_id}.{image_format}", bgr, image_format, _IMAGE_FORMATS[image_format])
    _write_image(out / "masks" / f"{image_id}.png", scene.mask, "png", _LABEL_PNG)
    _write_image(out / "scribbles" / f"{image_id}.png", scene.scribbles, "png", _LABEL_PNG)
    counts = np.bincount(scene.mask.ravel(), minlength=len(CLASSES))
    return {
        "index": index,
        "id": image_id,
        "classes": [int(c) for c in np.nonzero(counts)[0]],
        "pixels": counts.tolist(),
        "scribbled": int((scene.scribbles != 255).sum()),
        "scribbled_classes": [int(c) for c in np.unique(scene.scribbles) if c != 255],
    }


def _write_image(path: Path, array: np.ndarray, image_format: str, params: list[int]) -> None:
    """Encode and write via a temporary name + rename. No fsync per file (it tripled the write
    cost); ``generate_dataset`` flushes everything once before it writes the manifest."""
    ok, data = cv2.imencode(f".{image_format}", array, params)
    if not ok:
        raise OSError(f"could not encode {path}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)




def _manifest(results: list[dict], config: SyntheticConfig, seed: int, num_val: int, image_format: str, command: str | None) -> dict:

    n = len(results)
    pixels = np.sum([r["pixels"] for r in results], axis=0)
    total = float(pixels.sum())
    return {
        "format": "wsdeploy-dataset",
        "generator": "wsdeploy.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "per_image_rng": "numpy.random.default_rng(numpy.random.SeedSequence([seed, index]))",
        "num_images": n,
        "num_train": n - num_val,
        "num_val": num_val,
        "image_format": image_format,
        "classes": list(CLASSES),
        "tags": "every class present in the mask, stuff included; no background class",
        "config": config.to_dict(),
        "stats": {
            "scribble_coverage": round(sum(r["scribbled"] for r in results) / total, 5),
            "images_per_class": {name: sum(k in r["classes"] for r in results) for k, name in enumerate(CLASSES)},
            "scribbled_images_per_class": {
                name: sum(k in r["scribbled_classes"] for r in results) for k, name in enumerate(CLASSES)
            },
            "pixel_fraction_per_class": {name: round(float(pixels[k]) / total, 5) for k, name in enumerate(CLASSES)},
        },
        "versions": {"wsdeploy": __version__, "numpy": np.__version__, "opencv": cv2.__version__},
        "command": command,
    }
