"""What the trainer says to the person running it: a header before the first step, a warning
when the crops are larger than the images, and one summary line at the end.

    deeplabv3plus_resnet18 (width 16, output stride 16, random init) on 640 'train' images of
    data/synthetic (scribbles), device cpu x 1 process; batch 8 x 1 x 1 = 8, 3000 steps, adamw lr
    0.003; losses pce + crf 1.0 (from step 1000); writing runs/crf
    ...
    done: 3000 steps in 8m 31s (0.17 s/step); val miou 0.4990 on 160 'val' images

Pure functions returning strings: the trainer logs them on rank 0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from wsdeploy.data.image_header import image_format_and_size

__all__ = ["crop_warning", "format_duration", "image_sizes", "run_header", "schedule_warning", "summary_line"]

_HEADER_BYTES = 1 << 18  # enough for any PNG/JPEG header we read
_SIZE_SAMPLE = 200  # images whose header is read for the crop check


def run_header(config: Any, *, images: int, device: str, world_size: int, losses: dict[str, float]) -> str:
    """One paragraph: model, data, device, batch, schedule, losses and the output folder."""
    weights = "random init" if config.backbone_weights is None else f"backbone {Path(config.backbone_weights).name}"
    global_batch = config.batch_size * config.grad_accum * world_size
    parts = [" + ".join(n if n == "pce" else f"{n} {w:g}" for n, w in losses.items())]
    start = config.regularizers_start
    if len(losses) > 1 and start > 0 and "pce" in losses:
        parts.append(f"(from step {start})")
    if config.method == "affinity":  # the net is built on the frozen classifier, not from config.model
        model = f"affinity net on the frozen classifier {config.affinity.classifier}"
    else:
        model = f"{config.model} (width {config.width}, output stride {config.output_stride}, {weights})"
    crops = f"{config.crop_size} px"
    if getattr(config, "mosaic", 1) > 1:
        crops += f" in {config.mosaic}x{config.mosaic} mosaics (each batch item is {config.mosaic ** 2} crops)"
    return (
        f"{model} on "
        f"{images} {config.train_split!r} images of {config.data} ({config.supervision}), device {device} x "
        f"{world_size} process{'es' if world_size > 1 else ''}; batch {config.batch_size} x {config.grad_accum} x "
        f"{world_size} = {global_batch}, {config.steps} steps, {config.optimizer} lr {config.lr:g}, crops "
        f"{crops}; losses {' '.join(parts)}; writing {config.out_dir}"
    )


def image_sizes(paths: list[Path], limit: int = _SIZE_SAMPLE) -> list[tuple[int, int]]:
    """(H, W) read from the headers of up to `limit` evenly spread image files; unreadable ones skipped."""
    step = max(1, len(paths) // limit)
    sizes = []
    for path in paths[::step][:limit]:
        try:
            with open(path, "rb") as f:
                _, h, w = image_format_and_size(f.read(_HEADER_BYTES))
        except (OSError, ValueError):
            continue
        sizes.append((h, w))
    return sizes


def crop_warning(crop_size: int, scale_max: float, sizes: list[tuple[int, int]]) -> str | None:
    """A warning when even the largest image, scaled by `scale_max`, is smaller than the crop on
    both sides: then every crop is mostly padding, and each step pays for pixels that teach nothing."""
    if not sizes:
        return None
    largest = max(max(h, w) for h, w in sizes)
    if crop_size <= largest * scale_max:
        return None
    suggest = max(32, (largest // 32) * 32)
    return (
        f"--crop-size {crop_size} is larger than every training image (largest {largest} px, x{scale_max:g} at "
        f"most after scaling): the crops are mostly padding and each step costs {crop_size ** 2 / largest ** 2:.0f}x "
        f"the pixels; try --crop-size {suggest}"
    )


def schedule_warning(config: Any) -> str | None:
    """A warning when the regularized losses would switch on only after the last step."""
    if len(config.loss_names) > 1 and config.regularizers_start >= config.steps:
        return (f"the regularizers ({', '.join(n for n in config.loss_names if n != 'pce')}) switch on at step "
                f"{config.regularizers_start}, after the last step ({config.steps}): this run is pce alone; "
                f"lower --regularizers-from-step (-1 = a third of --steps)")
    return None


def format_duration(seconds: float) -> str:
    """'42.0 s', '8m 31s', '2h 13m'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def summary_line(*, steps: int, seconds: float, metric: str, summary: dict[str, Any], split: str,
                 val_images: int | None) -> str:
    """'done: N steps in T (s/step); val <metric> 0.4990 on K 'val' images' (no evaluation: said so)."""
    line = f"done: {steps} steps in {format_duration(seconds)} ({seconds / max(steps, 1):.2f} s/step)"
    value = summary.get(metric)
    if value is None:
        return line + "; no validation split evaluated"
    return line + f"; val {metric} {value:.4f} on {val_images} {split!r} images"
