"""`wsdeploy demo`: the whole story on the bundled data, in a few minutes on a 2-core CPU.

Three stages, each with a printed heading:

1. train: a small model trained briefly from *scribbles* (about 3% of pixels labelled) with
   partial cross-entropy plus ADM proposals on the dense-CRF energy (`wsdeploy.training.train`), by
   default on the bundled synthetic scenes (`--data`: any folder-layout dataset, e.g. CamVid);
   files under OUT/train/ (model.pt, last.pt, train_log.jsonl, config.yaml). `--train-steps 0`
   skips stages 1 and 2.
2. evaluate: that model scored against the dense masks of `--data`'s val split, which training
   never saw; next to the bundled model (or `--model`) on the same images when it knows the
   same classes.
3. segment: the bundled default model (street scenes, CamVid's 11 classes) or `--model` on the
   four CamVid val frames the package ships (`--samples`): OUT/NAME_mask.png and
   OUT/NAME_overlay.png per image, per-image statistics (classes present, latency, mIoU against
   the frame's mask) and the mIoU over the set.

OUT/summary.json records all three stages. Every file is written atomically.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from wsdeploy.metrics import SegmentationMetric
    from wsdeploy.training import TrainConfig

__all__ = ["DEFAULT_TRAIN_STEPS", "DEMO_DATA_PATH", "STREET_SAMPLES_PATH", "add_arguments", "demo_train_config", "run"]

DEMO_DATA_PATH = Path(__file__).resolve().parent.parent / "assets" / "demo_data"
# four CamVid val frames with masks and scribbles (README.md beside them: attribution, license)
STREET_SAMPLES_PATH = DEMO_DATA_PATH.parent / "camvid_samples"
# about 4 CPU-minutes for the whole demo at one thread with pce+adm (README, "Quick start")
DEFAULT_TRAIN_STEPS = 400
_TRAIN_SPLIT = "train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument(
        "--train-steps", type=int, default=DEFAULT_TRAIN_STEPS, metavar="N",
        help=f"steps of the brief scribble training (default: {DEFAULT_TRAIN_STEPS}); 0 skips "
        "training and evaluation",
    )
    parser.add_argument("--model", default=None, help="checkpoint to use instead of the bundled model")
    parser.add_argument("--data", default=str(DEMO_DATA_PATH),
                        help="dataset folder trained on and evaluated (default: the bundled synthetic scenes)")
    parser.add_argument("--split", default="val", help="split of --data to evaluate (default: val)")
    parser.add_argument("--samples", default=str(STREET_SAMPLES_PATH),
                        help="folder-layout dataset whose val split is segmented (default: the four bundled CamVid frames)")
    parser.add_argument("--limit", type=int, default=None, help="segment only the first N images")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu' or 'cuda[:N]'")
    parser.add_argument("--crf", action="store_true", help="refine with the dense CRF")


def demo_train_config(
    *, data: str, out_dir: str, steps: int, val_split: str = "val", device: str = "auto", progress: bool = True
) -> TrainConfig:
    """The `TrainConfig` of the demo's brief scribble training (stage 1).

    DeepLabV3+ on a width-16 ResNet-18 at 128 px, AdamW, batch 8, pCE + ADM proposals (the
    synthetic scribble table's pce+adm row: lambda 16, sigma_rgb 30, sigma_xy 25) from a third of
    the steps, in-process data loading;
    no intermediate checkpoints or evaluations (the final
    evaluation on `val_split` goes into the model card).
    """
    from wsdeploy.training import TrainConfig
    from wsdeploy.training.losses.settings import ADMSettings

    return TrainConfig(
        data=data, train_split=_TRAIN_SPLIT, val_split=val_split, supervision="scribbles",
        crop_size=128, scale_min=0.5, scale_max=1.5, workers=0,
        model="deeplabv3plus_resnet18", width=16, output_stride=16,
        # the loss settings pinned (not the trainer's defaults) so the demo's numbers only move
        # when this recipe does: the best row of the 3-seed synthetic scribble table, pce+adm
        # (52.2 val mIoU against pce+crf 47.6: benchmarks/results/scribble_table.json), with its
        # proposal settings (benchmarks/scribble_table.py's RUN_FLAGS)
        losses="pce,adm", adm=ADMSettings(crf_weight=16.0, sigma_rgb=30.0, sigma_xy=25.0),
        regularizers_from_step=steps // 3,
        optimizer="adamw", lr=3e-3, weight_decay=1e-4,
        steps=steps, warmup_steps=min(20, steps - 1), batch_size=8,
        out_dir=out_dir, checkpoint_every=0, eval_every=0, log_every=min(20, steps),
        tensorboard=False, progress=progress, device=device,
    )


def run(args: argparse.Namespace) -> int:
    import wsdeploy
    from wsdeploy.runtime import DEFAULT_MODEL_PATH

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    if args.train_steps < 0:
        raise ValueError(f"--train-steps must be >= 0 (0 skips training), got {args.train_steps}")
    training = args.train_steps > 0
    if training:
        _check_can_train(args)
    model_path = Path(args.model) if args.model else DEFAULT_MODEL_PATH
    model = wsdeploy.load(model_path, device=args.device, crf=args.crf)
    samples = _dataset(args.samples, "val")
    if samples.classes != model.classes:
        raise ValueError(f"the model's classes {model.classes} differ from those of --samples {samples.classes}")
    data = _dataset(args.data, args.split) if training else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"model": str(model_path), "data": args.data, "split": args.split,
                               "samples": args.samples}
    stage_s: dict[str, float] = {}

    if training:
        _heading(1, f"train {args.train_steps} steps from scribbles on the {_TRAIN_SPLIT!r} split")
        t0 = time.perf_counter()
        brief_path, config = _train(args, out / "train")
        stage_s["train"] = time.perf_counter() - t0

        _heading(2, f"evaluate against the dense masks of the {args.split!r} split (never trained on)")
        t0 = time.perf_counter()
        brief = wsdeploy.load(brief_path, device=args.device, crf=args.crf)
        brief_miou = _score(brief, data).miou()
        # the reference only where it knows the same classes (the bundled model knows CamVid's)
        reference_miou = _score(model, data).miou() if model.classes == data.classes else None
        stage_s["evaluate"] = time.perf_counter() - t0
        summary["training"] = {
            "steps": config.steps, "time_s": round(stage_s["train"], 1), "model": str(brief_path),
            "supervision": config.supervision, "losses": config.loss_weights,
            "train_images": len(_dataset(args.data, _TRAIN_SPLIT, labels=None)), "val_images": len(data),
            "val_miou": round(brief_miou, 4),
            "reference_val_miou": None if reference_miou is None else round(reference_miou, 4),
        }
        _print_comparison(summary["training"], model_path, model.card, bundled=args.model is None)
    else:
        print("stages 1-2 (train, evaluate) skipped: --train-steps 0")
        summary["training"] = None

    what = "street frames (CamVid val, never trained on)" if args.samples == str(STREET_SAMPLES_PATH) else "images"
    _heading(3, f"segment {len(samples) if args.limit is None else min(args.limit, len(samples))} {what} with {model_path.name}")
    t0 = time.perf_counter()
    summary.update(_segment(model, model_path, samples, args, out))
    stage_s["segment"] = time.perf_counter() - t0
    summary["stage_time_s"] = {k: round(v, 1) for k, v in stage_s.items()}

    from wsdeploy.atomic import atomic_write_text

    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    times = ", ".join(f"{k} {v:.1f} s" for k, v in stage_s.items())
    run_note = f" (training run in {out / 'train'})" if training else ""
    print(f"wrote masks, overlays and summary.json to {out}{run_note}")
    print(f"time per stage: {times}")
    return 0


# ---- stage 1: train --------------------------------------------------------------------------

def _check_can_train(args: argparse.Namespace) -> None:
    """Fail before any work when the training stage cannot run, saying how to fix it."""
    from wsdeploy.data.datasets import SegmentationDataset

    skip = "or pass --train-steps 0 to skip training"
    # find_spec, not import: importing albumentations may ask PyPI for updates
    if importlib.util.find_spec("albumentations") is None:
        raise ImportError(
            'the demo\'s training stage needs the "train" extra (albumentations): '
            f'pip install "wsdeploy[train]" (make demo installs it), {skip}'
        )
    if args.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"the training stage runs on --device auto, cpu or cuda, got {args.device!r}; {skip}")
    if args.split == _TRAIN_SPLIT:
        raise ValueError(
            f"--split {args.split!r} is the split the demo trains on; evaluate on another (val), {skip}"
        )
    try:
        _dataset(args.data, _TRAIN_SPLIT, labels="scribbles")
        SegmentationDataset(args.data, split=args.split, labels="masks")  # to evaluate against
    except ValueError as exc:
        raise ValueError(f"{exc}; {skip}") from None


def _train(args: argparse.Namespace, out_dir: Path) -> tuple[Path, TrainConfig]:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from wsdeploy.training import train

    config = demo_train_config(
        data=args.data, out_dir=str(out_dir), steps=args.train_steps, val_split=args.split, device=args.device
    )
    print(f"{config.model} (width {config.width}) at {config.crop_size} px, losses {config.losses}, "
          f"{config.optimizer} lr {config.lr}, batch {config.batch_size}; writing {out_dir}")
    command = shlex.join(["wsdeploy", "demo", "--train-steps", str(args.train_steps), "--data", args.data,
                          "--out", args.out])
    with logging_redirect_tqdm():  # the trainer's log lines print above the progress bar, not through it
        path = train(config, command=command)
    return path, config


# ---- stage 2: evaluate -----------------------------------------------------------------------

def _score(model: Any, data: Any) -> SegmentationMetric:
    """SegmentationMetric of `model.segment` over every image of `data` (with masks)."""
    from wsdeploy.metrics import SegmentationMetric

    metric = SegmentationMetric(len(model.classes), class_names=model.classes)
    for i in range(len(data)):
        item = data[i]
        metric.update(model.segment(item["image"]).labels, item["label"])
    return metric


def _print_comparison(row: dict[str, Any], reference: Path, card: dict[str, Any], *, bundled: bool) -> None:
    trained = card.get("training") or {}
    print(f"  brief model  val mIoU {row['val_miou']:.4f}  ({row['steps']} steps in {row['time_s']:.0f} s, "
          f"scribbles on {row['train_images']} images)")
    if row["reference_val_miou"] is None:
        print(f"  on {row['val_images']} val images whose dense masks it never trained on. ({reference.name} "
              f"knows other classes: {', '.join(card['classes'])}; stage 3 scores it on its own kind of image.)")
        return
    print(f"  {reference.name}  val mIoU {row['reference_val_miou']:.4f}  ({trained.get('steps', '?')} steps, "
          f"{card['supervision']} supervision)")
    unseen = ", whose dense masks the brief model never trained on" if bundled else ""
    print(f"  on the same {row['val_images']} images{unseen}.")
    if row["val_miou"] < row["reference_val_miou"]:
        print(f"  The brief model is weaker: it trained for {row['time_s']:.0f} s on {row['train_images']} small "
              "images with about 3% of their pixels labelled.\n  More images and steps narrow the gap "
              "(`wsdeploy train --supervision scribbles --losses pce,adm ...`).")


# ---- stage 3: segment ------------------------------------------------------------------------

def _segment(model: Any, model_path: Path, data: Any, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from wsdeploy.data.image_io import write_image, write_label_png
    from wsdeploy.metrics import SegmentationMetric, mean_iou
    from wsdeploy.visualize import overlay

    has_masks = data.index.mask_dir is not None
    count = len(data) if args.limit is None else min(args.limit, len(data))
    print(f"model: {model_path.name} ({model.card['arch']}, {model.card['supervision']} supervision), "
          f"device: {model.device}, data: {args.samples} [val], {count} image(s)")
    from wsdeploy.cli.segment import describe_model

    print(describe_model(model.card, bundled=args.model is None))
    metric = SegmentationMetric(len(model.classes), class_names=model.classes)
    model.segment(data[0]["image"])  # warm-up, not timed
    rows, latencies = [], []
    for i in range(count):
        item = data[i]
        t0 = time.perf_counter()
        seg = model.segment(item["image"])
        latency = time.perf_counter() - t0
        latencies.append(latency)
        write_label_png(out / f"{item['id']}_mask.png", seg.labels)
        write_image(out / f"{item['id']}_overlay.png", overlay(item["image"], seg.labels, model.palette))
        total = seg.labels.size
        shares = {k: round(n / total, 3) for k, n in seg.class_pixel_counts().items()}
        row = {"id": item["id"], "size": list(seg.labels.shape), "latency_ms": round(1000 * latency, 1),
               "class_share": shares}
        if item["label"] is not None:
            metric.update(seg.labels, item["label"])
            row["miou"] = round(mean_iou(seg.labels, item["label"], len(model.classes)), 4)
        rows.append(row)
        print(f"  {item['id']}: {row['size'][1]}x{row['size'][0]}  {row['latency_ms']:7.1f} ms"
              + (f"  mIoU {row['miou']:.3f}" if "miou" in row else "")
              + "  " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))

    result: dict[str, Any] = {"images": rows, "median_latency_ms": round(1000 * statistics.median(latencies), 1)}
    print(f"median latency {result['median_latency_ms']} ms per image (segment(), end to end)")
    if has_masks:
        result["metrics"] = metric.summary()
        print(f"mIoU over {count} image(s): {metric.miou():.4f}  (pixel accuracy {metric.pixel_accuracy():.4f})")
        for name, iou in result["metrics"]["per_class_iou"].items():
            print(f"  {name:>12}: {'-' if iou is None else f'{iou:.3f}'}")
    return result


# ---- helpers ---------------------------------------------------------------------------------

def _dataset(root: str, split: str, *, labels: str | None = "masks") -> Any:
    """The split of `root` with `labels`: "scribbles", None, or "masks" when the folder has them."""
    from wsdeploy.data.datasets import SegmentationDataset

    data = SegmentationDataset(root, split=split, labels=None)
    if labels is None or (labels == "masks" and data.index.mask_dir is None):
        return data
    return SegmentationDataset(root, split=split, labels=labels)


def _heading(number: int, text: str) -> None:
    print(f"\n== {number}/3 {text} ==", flush=True)
