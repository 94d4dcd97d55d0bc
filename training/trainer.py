"""The training loop: `train(config) -> Path` of the deployable checkpoint.

Provenance: nanoGPT's `train.py` (MIT). The loop reads top to bottom: DDP from torchrun's
environment, only rank 0 logs and writes files, autocast and GradScaler are no-ops when AMP is
off, gradients accumulate over micro-batches (DDP syncs on the last one only), the learning rate
is a function of the step.

What is trained follows `config.resolved_method`: a segmenter on masks or scribbles ("segment",
pCE + regularizers), a CAM classifier on image-level tags ("classifier", multi-label soft margin,
evaluated by tag mAP), or a segmenter on CAM seeds read as partial labels from `config.seeds`
("seeds-rloss": pCE + regularizers; "sec": SEC's seed / expand / constrain losses).

Files in `config.out_dir` (written by rank 0, atomically):
    config.yaml          the run's TrainConfig
    last.pt              training state every `checkpoint_every` steps and at the end (`--resume`)
    train_log.jsonl      one JSON object per log step / evaluation (+ tensorboard/ if installed)
    model.pt             the deployable checkpoint with its model card (`wsdeploy.load`)
"""
from __future__ import annotations

import functools
import json
import logging
import os
import random
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from wsdeploy.atomic import atomic_write_text
from wsdeploy.checkpoint import ModelCard, save_checkpoint
from wsdeploy.training.collate import collate_segmentation, tags_to_multihot
from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.data.image_io import IMAGENET_MEAN, IMAGENET_STD
from wsdeploy.data.index import format_ids
from wsdeploy.training.transforms import train_transform, val_transform
from wsdeploy.models import CAMClassifier, SegmentationModel, build_model, list_models
from wsdeploy.training.config import RESUMABLE_CHANGES, TrainConfig, config_to_dict
from wsdeploy.training.data import ResumableSampler, SeededAugmentation, ShardSampler
from wsdeploy.training.distributed import DistContext, all_gather_objects, all_reduce_sum
from wsdeploy.training.evaluate import evaluate
from wsdeploy.training.tags.evaluate import evaluate_classifier
from wsdeploy.training.objective import build_regularizers, classifier_losses, compute_losses, sec_losses
from wsdeploy.training.optim import build_optimizer, lr_at, set_lr
from wsdeploy.training.run_log import RunLog
from wsdeploy.training.state import capture_rng, load_train_state, restore_rng, save_train_state
from wsdeploy.training.tags.targets import dataset_background_index, foreground_indices, tags_to_foreground_multihot
from wsdeploy.visualize import default_palette

__all__ = ["train"]

logger = logging.getLogger(__name__)


def train(
    config: TrainConfig,
    *,
    resume: str | os.PathLike | None = None,
    command: str | None = None,
) -> Path:
    """Train a segmentation model as `config` says; return the path of `model.pt`.

    Under `torchrun` every process calls this; each trains on its shard of the data and rank 0
    writes the files. Without torchrun it runs in one process, on CUDA or CPU. Like any training
    script it seeds the global torch, numpy and Python random generators (from `config.seed`).

    Args:
        config: the run's settings.
        resume: a `last.pt` to continue from. Its config must equal `config` except for
            `RESUMABLE_CHANGES` (steps, out_dir, logging and checkpoint intervals, workers,
            device); with the same steps the resumed run reproduces the uninterrupted one.
        command: the command line to record in the model card (the CLI passes its own).

    Returns:
        `Path(config.out_dir) / "model.pt"`, written when training is done.

    Raises:
        ValueError: bad dataset, model, crop size, resume file or a config that does not match it.
    """
    ctx = DistContext.from_env(os.environ, device=config.device)
    try:
        return _train(config, ctx, resume=resume, command=command)
    finally:
        ctx.close()


def _train(config: TrainConfig, ctx: DistContext, *, resume: Any, command: str | None) -> Path:
    out_dir = Path(config.out_dir)
    state = load_train_state(resume) if resume is not None else None
    if state is not None:
        _check_resumable(state["config"], config, resume)

    # ---- data ------------------------------------------------------------------------------
    # method: "segment" (masks or scribbles), "classifier" (tags), "seeds-rloss" / "sec" (seeds)
    method = config.resolved_method
    labels = {"segment": "masks" if config.supervision == "full" else "scribbles",
              "classifier": None}.get(method, "scribbles")  # seeds are read as partial labels
    train_set = SegmentationDataset(
        config.data, split=config.train_split, labels=labels, scribble_dir=config.seeds
    )
    dataset_classes = list(train_set.classes)
    background = dataset_background_index(train_set)
    if method in ("classifier", "sec"):
        _check_tags(train_set)
    classes = dataset_classes  # the model's outputs: a classifier predicts foreground classes only
    if method == "classifier":
        classes = [dataset_classes[i] for i in foreground_indices(len(dataset_classes), background)]
    if state is not None and state["classes"] != classes:
        raise ValueError(f"{resume}: trained on classes {state['classes']}, the dataset has {classes}")

    # ---- model, optimizer, AMP -------------------------------------------------------------
    _seed_everything(config.seed)  # same initial weights on every rank
    model_kwargs: dict[str, Any] = {"output_stride": config.output_stride, "width": config.width}
    if config.backbone_weights is not None:
        model_kwargs["backbone_weights"] = config.backbone_weights
    model = build_model(config.model, len(classes), **model_kwargs)
    if method != "classifier" and not isinstance(model, SegmentationModel):
        segmenters = [m for m in list_models() if not m.startswith("classifier_")]
        raise ValueError(f"model {config.model!r} is not a segmentation model; use one of {segmenters}")
    if method == "classifier" and not isinstance(model, CAMClassifier):
        raise ValueError(f"model {config.model!r} is not a CAM classifier (classifier_*)")
    if config.crop_size % model.input_multiple:
        m = model.input_multiple
        raise ValueError(
            f"crop_size must be a multiple of {m} (the input multiple of {config.model!r} at "
            f"output_stride {config.output_stride}), got {config.crop_size}; "
            f"try {-(-config.crop_size // m) * m}"
        )
    model.to(ctx.device)
    if ctx.distributed and ctx.device.type == "cuda" and config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(
        model,
        name=config.optimizer,
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
        backbone_lr_scale=config.backbone_lr_scale,
    )
    if config.amp == "fp16" and ctx.device.type != "cuda":
        raise ValueError("amp='fp16' needs CUDA; use amp='bf16' or 'off' on CPU")
    amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.amp]
    autocast = (
        torch.autocast(ctx.device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    )
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=config.amp == "fp16")
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step = state["step"]
    raw_model = model
    if ctx.distributed:
        device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=device_ids)
    regularizers = {n: m.to(ctx.device) for n, m in build_regularizers(config).items()}
    sec = None
    if method == "sec":
        from wsdeploy.training.losses.sec import SECLoss

        sec = SECLoss(
            len(classes), background_index=background, seed_weight=config.sec_seed_weight,
            expand_weight=config.sec_expand_weight, constrain_weight=config.sec_constrain_weight,
            fg_decay=config.sec_fg_decay, bg_decay=config.sec_bg_decay,
        ).to(ctx.device)
    term_names = {"classifier": ["soft_margin"], "sec": ["seed", "expand", "constrain"]}.get(
        method, ["pce", *regularizers]
    )

    # ---- loaders: endless, seeded, resumable at any step ------------------------------------
    per_update = config.batch_size * config.grad_accum  # samples per rank per update
    collate = functools.partial(collate_segmentation, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    augment = train_transform(
        crop_size=config.crop_size, scale_range=(config.scale_min, config.scale_max), hflip=config.hflip
    )
    loader = DataLoader(
        SeededAugmentation(train_set, augment, seed=config.seed),
        batch_size=config.batch_size,
        sampler=ResumableSampler(
            len(train_set), seed=config.seed, rank=ctx.rank, world_size=ctx.world_size,
            start=step * per_update,
        ),
        num_workers=config.workers,
        collate_fn=collate,
        pin_memory=ctx.device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global RNG untouched
    )
    val_loader = None
    if config.val_split:
        try:
            val_set = SegmentationDataset(
                config.data,
                split=config.val_split,
                labels=None if method == "classifier" else "masks",
                transform=val_transform(pad_multiple=raw_model.input_multiple),
            )
            if method == "classifier":
                _check_tags(val_set)
        except ValueError as exc:
            raise ValueError(
                f"validation split: {exc}; pass val_split='' to train without evaluation"
            ) from None
        val_loader = DataLoader(
            val_set,
            batch_size=1,  # whole images of different sizes
            sampler=ShardSampler(len(val_set), rank=ctx.rank, world_size=ctx.world_size),
            num_workers=min(config.workers, 2),
            collate_fn=collate,
        )

    def run_eval() -> dict[str, Any]:
        if method == "classifier":
            return evaluate_classifier(
                raw_model, val_loader, class_names=classes, num_dataset_classes=len(dataset_classes),
                background=background, ctx=ctx, autocast=autocast,
            )
        return evaluate(raw_model, val_loader, class_names=classes, ctx=ctx, autocast=autocast)

    # ---- rank 0 writes; everyone restores its random state and trains ------------------------
    with ExitStack() as stack:
        log = None
        if ctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_config(out_dir / "config.yaml", config)
            log = RunLog(
                out_dir, tensorboard=config.tensorboard, resume_step=step if state is not None else None
            )
            stack.callback(log.close)
        if state is not None:
            if len(state["rng"]) == ctx.world_size:
                restore_rng(state["rng"][ctx.rank], ctx.device)
            else:
                logger.warning(
                    "%s was written by %d process(es), this run has %d: random states are "
                    "reseeded, so dropout will not repeat the interrupted run",
                    resume, len(state["rng"]), ctx.world_size,
                )
        else:
            _seed_everything(config.seed + ctx.rank)  # per-rank dropout etc.
        pbar = stack.enter_context(
            tqdm(total=config.steps, initial=step, desc="train", unit="step",
                 disable=not (ctx.is_main and config.progress))
        )
        batches = iter(loader)
        model.train()
        t_last, steps_since_log = time.perf_counter(), 0
        while step < config.steps:
            lr = lr_at(step, lr=config.lr, steps=config.steps, warmup_steps=config.warmup_steps,
                       power=config.poly_power)
            set_lr(optimizer, lr)
            active = regularizers if step >= config.regularizers_from_step else {}
            sums: dict[str, torch.Tensor] = {}
            for micro in range(config.grad_accum):
                batch = next(batches)
                x = batch["image"].to(ctx.device, non_blocking=True)  # (B, 3, H, W) normalised
                label = batch["label"]  # (B, H, W) int64; None for a classifier
                label = None if label is None else label.to(ctx.device, non_blocking=True)
                rgb = torch.from_numpy(np.stack(batch["rgb"])).to(ctx.device)  # (B, H, W, 3) uint8
                rgb = rgb.permute(0, 3, 1, 2).float()  # (B, 3, H, W) 0..255
                last_micro = micro == config.grad_accum - 1
                sync = nullcontext() if last_micro or not ctx.distributed else model.no_sync()
                with sync:
                    with autocast:
                        out = model(x)  # (B, K, H/s, W/s) logits; a classifier: (B, K)
                    if method == "classifier":
                        target = tags_to_foreground_multihot(batch["tags"], len(dataset_classes), background)
                        loss, terms = classifier_losses(out, target.to(ctx.device))
                    elif method == "sec":
                        tags = tags_to_multihot(batch["tags"], len(dataset_classes)).to(ctx.device)
                        loss, terms = sec_losses(out, label, rgb, tags, sec)
                    else:
                        loss, terms = compute_losses(out, label, rgb, active)
                    scaler.scale(loss / config.grad_accum).backward()
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + value.detach() / config.grad_accum
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            steps_since_log += 1
            pbar.update(1)

            if step % config.log_every == 0 or step == config.steps:
                entry = _train_entry(step, sums, term_names, ctx)
                now = time.perf_counter()
                entry.update(lr=lr, step_time_s=(now - t_last) / steps_since_log)
                t_last, steps_since_log = now, 0
                if not np.isfinite(entry["loss"]):
                    raise FloatingPointError(f"loss is {entry['loss']} at step {step}: {entry}")
                if log is not None:
                    log.write(entry)
                    pbar.set_postfix(loss=f"{entry['loss']:.4f}", lr=f"{lr:.2e}")
            periodic_eval = config.eval_every and step % config.eval_every == 0
            if val_loader is not None and periodic_eval and step < config.steps:  # last: below
                summary = run_eval()
                if log is not None:
                    log.write({"step": step, "split": config.val_split, **summary})
            if step == config.steps or (config.checkpoint_every and step % config.checkpoint_every == 0):
                rng = all_gather_objects(capture_rng(ctx.device), ctx)  # every rank's state
                if ctx.is_main:
                    save_train_state(
                        out_dir / "last.pt", step=step, samples_per_rank=step * per_update,
                        config=config, classes=classes, model=raw_model, optimizer=optimizer,
                        scaler=scaler, rng=rng,
                    )
        del batches  # stop DataLoader workers before evaluation starts its own

        # ---- final evaluation and the deployable checkpoint ---------------------------------
        summary = {}
        if val_loader is not None:
            summary = run_eval()
        model_path = out_dir / "model.pt"
        if ctx.is_main:
            if summary:
                log.write({"step": step, "split": config.val_split, **summary})
            card = ModelCard(
                arch=config.model,
                arch_kwargs={"output_stride": config.output_stride, "width": config.width},
                classes=classes,
                palette=default_palette(len(classes)).tolist(),
                mean=list(IMAGENET_MEAN),
                std=list(IMAGENET_STD),
                input_size=[config.crop_size, config.crop_size],
                supervision=config.supervision,
                losses=config.loss_weights,
                evaluation={"split": config.val_split, **summary} if summary else {},
                training={
                    "steps": step,
                    "batch_size": config.batch_size,
                    "grad_accum": config.grad_accum,
                    "world_size": ctx.world_size,
                    "global_batch": per_update * ctx.world_size,
                    "data": str(Path(config.data).resolve()),
                    "command": command,
                    "resumed_from": None if resume is None else str(resume),
                    "method": method,
                    "background": None if background is None else dataset_classes[background],
                    "seeds": None if config.seeds is None else str(Path(config.data, config.seeds).resolve()),
                    "config": config_to_dict(config),
                },
            )
            save_checkpoint(model_path, raw_model, card)
            metric = "mAP" if method == "classifier" else "mIoU"
            logger.info("wrote %s (val %s %s)", model_path, metric, summary.get(metric.lower()))
    ctx.barrier()  # every rank returns once model.pt exists
    return model_path


def _train_entry(
    step: int, sums: dict[str, torch.Tensor], names: list[str], ctx: DistContext
) -> dict[str, Any]:
    """Loss terms of the last update, averaged over ranks; inactive regularizers log 0."""
    zero = torch.zeros((), device=ctx.device)
    values = torch.stack([sums.get(n, zero).float() for n in names])  # (T,)
    values = all_reduce_sum(values, ctx) / ctx.world_size
    terms = dict(zip(names, values.tolist()))
    return {"step": step, "loss": sum(terms.values()), **terms}


def _check_tags(dataset: SegmentationDataset) -> None:
    """Every image of a split trained or evaluated on tags must have them (an empty list is
    fine: an image with none of the classes)."""
    index = dataset.index
    if index.tags_from_masks:
        missing = [s.id for s in index.samples if s.mask is None]
        source = "a mask to derive them from"
    else:
        missing = [s.id for s in index.samples if s.tags is None]
        source = "a line in tags.txt (list an image with no class names to say it has none)"
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) of split {index.split!r} have no tags: "
            f"{format_ids(missing)}; each needs {source}"
        )


def _check_resumable(stored: dict[str, Any], config: TrainConfig, resume: Any) -> None:
    now = config_to_dict(config)
    differ = [
        f"{k}: checkpoint {stored.get(k)!r}, now {now[k]!r}"
        for k in now
        if k not in RESUMABLE_CHANGES and stored.get(k) != now[k]
    ]
    if differ:
        raise ValueError(
            f"cannot resume from {resume}: the config differs in {differ}; only "
            f"{list(RESUMABLE_CHANGES)} may change when resuming"
        )


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _write_config(path: Path, config: TrainConfig) -> None:
    values = config_to_dict(config)
    try:
        import yaml
    except ImportError:  # pyyaml is in the train extra; JSON is valid YAML
        atomic_write_text(path, json.dumps(values, indent=2) + "\n")
    else:
        atomic_write_text(path, yaml.safe_dump(values, sort_keys=False))
