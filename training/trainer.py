"""The training loop: `train(config) -> Path` of the deployable checkpoint.

Provenance: nanoGPT's `train.py` (MIT). The loop reads top to bottom: DDP from torchrun's
environment, only rank 0 logs and writes files, autocast and GradScaler are no-ops when AMP is
off, gradients accumulate over micro-batches (DDP syncs on the last one only), the learning rate
is a function of the step.

What differs between runs is a small task object chosen once from the config
(`wsdeploy.training.tasks`): a segmenter on masks or scribbles (pCE + regularizers), a CAM
classifier on image-level tags (multi-label soft margin, evaluated by tag mAP), or a segmenter
on CAM seeds read as partial labels from `config.seeds` ("seeds-rloss": pCE + regularizers;
"sec": SEC's seed / expand / constrain losses). The image travels once, as uint8 (B, 3, H, W),
and is normalised on the device in one place (`collate.network_input`).

Files in `config.out_dir` (written by rank 0, atomically):
    config.yaml          the run's TrainConfig
    last.pt              training state every `checkpoint_every` steps and at the end (`--resume`)
    train_log.jsonl      one JSON object per log step / evaluation (+ tensorboard/ if installed)
    model.pt             the deployable checkpoint with its model card (`wsdeploy.load`)
"""
from __future__ import annotations

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
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from wsdeploy.atomic import atomic_write_text
from wsdeploy.checkpoint import ModelCard, save_checkpoint
from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.data.image_io import IMAGENET_MEAN, IMAGENET_STD
from wsdeploy.training.collate import collate_segmentation, network_input
from wsdeploy.training.config import RESUMABLE_CHANGES, TrainConfig, config_from_dict, config_to_dict
from wsdeploy.training.data import ResumableSampler, SeededAugmentation, ShardSampler
from wsdeploy.training.distributed import DistContext, all_gather_objects, all_reduce_sum
from wsdeploy.training.optim import build_optimizer, lr_at, set_lr
from wsdeploy.training.report import crop_warning, image_sizes, run_header, schedule_warning, summary_line
from wsdeploy.training.run_log import RunLog
from wsdeploy.training.state import capture_rng, load_train_state, restore_rng, save_train_state
from wsdeploy.training.tags.mosaic import MosaicAugmentation
from wsdeploy.training.tasks import Task, make_task
from wsdeploy.training.transforms import train_transform, val_transform
from wsdeploy.visualize import class_palette

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

    # ---- the task (what is learnt from what) and its data -----------------------------------
    task = make_task(config)
    train_set = SegmentationDataset(config.data, split=config.train_split, labels=task.labels, scribble_dir=config.seeds)
    task.bind(train_set)
    classes = task.classes
    if state is not None and state["classes"] != classes:
        raise ValueError(f"{resume}: trained on classes {state['classes']}, the dataset has {classes}")

    # ---- model, optimizer, AMP -------------------------------------------------------------
    _seed_everything(config.seed)  # same initial weights on every rank
    model_kwargs: dict[str, Any] = {"output_stride": config.output_stride, "width": config.width}
    if config.backbone_weights is not None:
        model_kwargs["backbone_weights"] = config.backbone_weights
    model = task.build_model(model_kwargs)  # config.model; method affinity: the net on its classifier
    task.check_model(model)
    _check_crop_size(config, model.input_multiple)
    model.to(ctx.device)
    if ctx.distributed and ctx.device.type == "cuda" and config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(
        model, name=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
        momentum=config.momentum, backbone_lr_scale=config.backbone_lr_scale,
    )
    if config.amp == "fp16" and ctx.device.type != "cuda":
        raise ValueError("amp='fp16' needs CUDA; use amp='bf16' or 'off' on CPU")
    amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.amp]
    autocast = torch.autocast(ctx.device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=config.amp == "fp16")
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step = state["step"]
    raw_model = model
    if ctx.distributed:
        model = DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
    task.to(ctx.device)

    # ---- loaders: endless, seeded, resumable at any step ------------------------------------
    per_update = config.batch_size * config.grad_accum  # samples per rank per update
    loader = _train_loader(config, train_set, ctx, start=step * per_update)
    val_loader = _val_loader(config, task, raw_model.input_multiple, ctx) if config.val_split else None
    if ctx.is_main:  # what is about to happen, before the first (possibly long) step
        logger.info(run_header(config, images=len(train_set), device=str(ctx.device), world_size=ctx.world_size,
                               losses=config.loss_weights))
        warnings = [crop_warning(config.crop_size, config.scale_max, image_sizes([s.image for s in train_set.index.samples])),
                    schedule_warning(config) if task.term_names != ["pce"] else None]
        for warning in filter(None, warnings):
            logger.warning(warning)
    started, first_step = time.perf_counter(), step

    # ---- rank 0 writes; everyone restores its random state and trains ------------------------
    with ExitStack() as stack:
        log = None
        if ctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_config(out_dir / "config.yaml", config)
            log = RunLog(out_dir, tensorboard=config.tensorboard, resume_step=step if state is not None else None)
            stack.callback(log.close)
        _restore_or_seed_rng(state, config, ctx, resume)
        pbar = stack.enter_context(
            tqdm(total=config.steps, initial=step, desc="train", unit="step",
                 disable=not (ctx.is_main and config.progress))
        )
        batches = iter(loader)
        model.train()
        t_last, steps_since_log = time.perf_counter(), 0
        saved_step = step  # the step of the last complete last.pt (0: none yet)
        while step < config.steps:
            lr = lr_at(step, lr=config.lr, steps=config.steps, warmup_steps=config.warmup_steps,
                       power=config.poly_power)
            set_lr(optimizer, lr)
            sums: dict[str, torch.Tensor] = {}
            for micro in range(config.grad_accum):
                batch = _to_device(next(batches), ctx.device)  # image (B, 3, H, W) uint8
                last_micro = micro == config.grad_accum - 1
                sync = nullcontext() if last_micro or not ctx.distributed else model.no_sync()
                with sync:
                    with autocast:
                        out = model(network_input(batch["image"]))  # (B, K, H/s, W/s); classifier (B, K)
                    loss, terms = task.loss(out, batch, step)
                    scaler.scale(loss / config.grad_accum).backward()
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + value.detach() / config.grad_accum
            _check_finite(step + 1, sums, raw_model, scaler, saved_step)  # before the update
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            steps_since_log += 1
            pbar.update(1)

            if step % config.log_every == 0 or step == config.steps:
                entry = _train_entry(step, sums, task.term_names, ctx)
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
                summary = task.evaluate(raw_model, val_loader, ctx, autocast)
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
                saved_step = step
        del batches  # stop DataLoader workers before evaluation starts its own
        pbar.close()  # so the lines below start on a line of their own
        seconds = time.perf_counter() - started

        # ---- final evaluation and the deployable checkpoint ---------------------------------
        summary = task.evaluate(raw_model, val_loader, ctx, autocast) if val_loader is not None else {}
        model_path = out_dir / "model.pt"
        if ctx.is_main:
            if summary:
                log.write({"step": step, "split": config.val_split, **summary})
            card = task.card(_model_card(config, task, summary, ctx, step=step, command=command, resume=resume))
            save_checkpoint(model_path, task.deployable(raw_model), card)
            logger.info(summary_line(steps=step - first_step, seconds=seconds, metric=task.metric, summary=summary,
                                     split=config.val_split, val_images=len(val_loader.dataset) if val_loader else None))
    ctx.barrier()  # every rank returns once model.pt exists
    return model_path


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch's tensors on `device` (the uint8 image once; labels when there are any)."""
    moved = dict(batch)
    moved["image"] = batch["image"].to(device, non_blocking=True)
    if batch.get("label") is not None:
        moved["label"] = batch["label"].to(device, non_blocking=True)
    return moved


def _train_loader(config: TrainConfig, train_set: SegmentationDataset, ctx: DistContext, *, start: int) -> DataLoader:
    augment = train_transform(
        crop_size=config.crop_size, scale_range=(config.scale_min, config.scale_max), hflip=config.hflip,
        vflip=config.vflip,
    )
    dataset: Dataset = SeededAugmentation(train_set, augment, seed=config.seed)
    if config.mosaic > 1:  # batch_size mosaics of mosaic**2 crops each
        dataset = MosaicAugmentation(dataset, grid=config.mosaic, seed=config.seed)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=ResumableSampler(len(train_set), seed=config.seed, rank=ctx.rank, world_size=ctx.world_size, start=start),
        num_workers=config.workers,
        collate_fn=collate_segmentation,
        pin_memory=ctx.device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global RNG untouched
    )


def _val_loader(config: TrainConfig, task: Task, input_multiple: int, ctx: DistContext) -> DataLoader:
    try:
        val_set = SegmentationDataset(
            config.data, split=config.val_split, labels=task.val_labels,
            transform=val_transform(pad_multiple=input_multiple),
        )
        task.check_dataset(val_set)
    except ValueError as exc:
        raise ValueError(f"validation split: {exc}; pass val_split='' to train without evaluation") from None
    return DataLoader(
        val_set,
        batch_size=1,  # whole images of different sizes
        sampler=ShardSampler(len(val_set), rank=ctx.rank, world_size=ctx.world_size),
        num_workers=min(config.workers, 2),
        collate_fn=collate_segmentation,
    )


def _model_card(
    config: TrainConfig, task: Task, summary: dict[str, Any], ctx: DistContext, *, step: int,
    command: str | None, resume: Any,
) -> ModelCard:
    classes = task.classes
    return ModelCard(
        arch=config.model,
        arch_kwargs={"output_stride": config.output_stride, "width": config.width},
        classes=classes,
        palette=class_palette(classes).tolist(),
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
            "global_batch": config.batch_size * config.grad_accum * ctx.world_size,
            "data": str(config.data),  # as given: an absolute path would carry this machine's folders
            "command": command,
            "resumed_from": None if resume is None else str(resume),
            **task.card_fields(),
            "config": config_to_dict(config),
        },
    )


def _check_crop_size(config: TrainConfig, multiple: int) -> None:
    if config.crop_size % multiple:
        raise ValueError(
            f"crop_size must be a multiple of {multiple} (the input multiple of {config.model!r} at "
            f"output_stride {config.output_stride}), got {config.crop_size}; "
            f"try {-(-config.crop_size // multiple) * multiple}"
        )


def _restore_or_seed_rng(state: dict[str, Any] | None, config: TrainConfig, ctx: DistContext, resume: Any) -> None:
    """Resume: every rank's random state from the checkpoint; new run: per-rank seeds."""
    if state is None:
        _seed_everything(config.seed + ctx.rank)  # per-rank dropout etc.
    elif len(state["rng"]) == ctx.world_size:
        restore_rng(state["rng"][ctx.rank], ctx.device)
    else:
        logger.warning(
            "%s was written by %d process(es), this run has %d: random states are reseeded, "
            "so dropout will not repeat the interrupted run", resume, len(state["rng"]), ctx.world_size,
        )
        _seed_everything(config.seed + ctx.rank)


def _check_finite(
    step: int, sums: dict[str, torch.Tensor], model: nn.Module, scaler: torch.amp.GradScaler, saved_step: int
) -> None:
    """Stop before an update with non-finite gradients, so they never reach the weights.

    With fp16 AMP the GradScaler is the guard (it skips such steps and lowers its scale). Without
    it, one NaN step would poison every weight. The decision uses the gradients, which DDP has
    already averaged, so every rank decides alike; the message gives this rank's loss terms.

    Raises:
        FloatingPointError: naming the step, the loss terms and the last checkpoint to resume from.
    """
    if scaler.is_enabled():
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads or torch.isfinite(torch.nn.utils.get_total_norm(grads, norm_type=float("inf"))):
        return
    terms = {name: round(float(v), 6) for name, v in sums.items()}
    raise FloatingPointError(
        f"non-finite gradients at step {step} (loss terms {terms}); the update was not applied. "
        + (f"last.pt holds step {saved_step}: lower the lr or check the data, then --resume it"
           if saved_step else "no checkpoint was written yet")
    )


def _train_entry(
    step: int, sums: dict[str, torch.Tensor], names: list[str], ctx: DistContext
) -> dict[str, Any]:
    """Loss terms of the last update, averaged over ranks; inactive regularizers log 0."""
    zero = torch.zeros((), device=ctx.device)
    values = torch.stack([sums.get(n, zero).float() for n in names])  # (T,)
    values = all_reduce_sum(values, ctx) / ctx.world_size
    terms = dict(zip(names, values.tolist()))
    return {"step": step, "loss": sum(terms.values()), **terms}


def _check_resumable(stored: dict[str, Any], config: TrainConfig, resume: Any) -> None:
    now = config_to_dict(config)
    try:  # a checkpoint of an earlier version stores the settings groups flat
        stored = config_to_dict(config_from_dict(stored))
    except ValueError as exc:
        raise ValueError(f"cannot resume from {resume}: its config is not readable ({exc})") from None
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
