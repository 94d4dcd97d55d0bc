"""`wsdeploy train --data DIR --supervision scribbles --losses pce,crf ...`: train a segmenter
(from masks, scribbles or CAM seeds) or, with `--supervision tags`, a CAM classifier.

One flag per `TrainConfig` field, generated from the dataclass (type, default and help from the
field), plus `--config YAML` (keys = field names) and `--resume last.pt`. Precedence, lowest
first: defaults < the resumed checkpoint's config (when no --config) < --config < flags.

Multi-GPU (or multi-process CPU with gloo): `torchrun --nproc_per_node N -m wsdeploy train ...`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
from typing import Any

__all__ = ["add_arguments", "command_line", "overrides_from_args", "run"]

_EPILOG = """\
examples:
  wsdeploy train --data data/synthetic --supervision scribbles --preset cpu-small --out-dir runs/small
  wsdeploy train --data data/synthetic --supervision scribbles --losses pce,crf \\
      --model lraspp_resnet18 --width 16 --crop-size 128 --steps 2000 --out-dir runs/crf
  wsdeploy train --data data/synthetic --supervision tags --model classifier_resnet18 \\
      --output-stride 8 --out-dir runs/cam                      # CAM classifier from tags.txt
  wsdeploy train --data data/synthetic --supervision tags --method seeds-rloss \\
      --seeds runs/seeds --losses pce,crf --out-dir runs/seeds_crf  # segmenter on CAM seeds
  wsdeploy train --data data/synthetic --supervision tags --method affinity --crop-size 128 \\
      --affinity-classifier runs/cam/model.pt --seeds runs/seeds --affinity-background \\
      sky,grass,sand,water --out-dir runs/affinity     # the random walk's affinity net
  wsdeploy train --data data/synthetic --supervision tags --method seeds-rloss --seeds runs/pseudo \\
      --crop-size 128 --rounds 2 --relabel-crf --out-dir runs/self_help   # self-training: round1/, round2/
  wsdeploy train --config run.yaml --lr 0.005
  wsdeploy train --resume runs/crf/last.pt
  torchrun --nproc_per_node 4 -m wsdeploy train --config run.yaml
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--config`, `--resume` and one `--field-name` flag per `TrainConfig` field."""
    from wsdeploy.training.config import flat_fields

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument(
        "--config", metavar="YAML", default=None,
        help="YAML file of config fields (underscored names, e.g. crop_size: 256); flags override it",
    )
    parser.add_argument(
        "--resume", metavar="PATH", default=None,
        help="continue from a training checkpoint (the run's last.pt); its config is the base",
    )
    from wsdeploy.training.presets import PRESETS

    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default=None,
        help="start from a named recipe, under --config and flags: 'cpu-small' (the synthetic "
        "benchmark's measured CPU recipe: DeepLabV3+ R18 width 16, 128-px crops, AdamW, 3000 steps, "
        "pce+crf) or 'voc-deeplabv3plus-r101' (rloss's published VOC recipe: 512 crops, SGD 0.007 poly, "
        "batch 12, 30k steps, its CRF weight converted with kernel_mass(); pass --backbone-weights); "
        "see wsdeploy.training.presets",
    )
    group = parser.add_argument_group("training config (TrainConfig fields; a loss's settings as --<loss>-<setting>)")
    for name, kind, field in flat_fields():
        flag = "--" + name.replace("_", "-")
        default = "required" if field.default is dataclasses.MISSING else repr(field.default)
        help_text = f"{field.metadata['help']} (default: {default})"
        # SUPPRESS: only flags given on the command line reach the namespace, so they can
        # override a YAML file or a resumed config without the defaults clobbering them
        if kind is bool:
            group.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS, help=help_text,
            )
        elif kind in (int, float, str):
            group.add_argument(
                flag, dest=name, type=kind, default=argparse.SUPPRESS, help=help_text,
                metavar=kind.__name__.upper(),
            )
        else:  # str | None: "none" gives None
            group.add_argument(
                flag, dest=name, type=_optional_str, default=argparse.SUPPRESS,
                help=help_text + "; 'none' for None", metavar="STR",
            )


def _optional_str(value: str) -> str | None:
    return None if value.lower() in ("none", "null") else value


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The `TrainConfig` fields given as flags (field name -> value)."""
    from wsdeploy.training.config import field_types

    return {name: getattr(args, name) for name in field_types() if hasattr(args, name)}


def run(args: argparse.Namespace) -> int:
    from wsdeploy.training import load_config, train
    from wsdeploy.training.config import config_from_dict, config_to_dict
    from wsdeploy.training.state import read_train_config

    from wsdeploy.training.presets import preset

    overrides = overrides_from_args(args)
    if args.resume is not None and args.preset is not None:
        raise ValueError("--preset starts a new run; --resume continues with the checkpoint's own config")
    if args.resume is not None and args.config is None:
        base = config_to_dict(read_train_config(args.resume))  # nested; the flat flags win
        config = config_from_dict({**base, **overrides})
    else:  # defaults < preset < YAML < flags
        config = load_config(args.config, overrides=overrides, base=preset(args.preset))
    if config.rounds > 1:  # self-training: each round trains, then re-labels the train split
        from wsdeploy.training.tags.self_training import self_train

        if args.resume is not None:
            raise ValueError("--rounds continues an interrupted driver by itself: run the same command "
                             "again (without --resume)")
        paths = self_train(config, command=command_line(args))
        if os.environ.get("RANK", "0") == "0":
            print("wrote " + ", ".join(str(p) for p in paths))
        return 0
    path = train(config, resume=args.resume, command=command_line(args))
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0
        print(f"wrote {path}")
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The `wsdeploy train ...` command equivalent to `args` (recorded in the model card)."""
    parts = ["wsdeploy", "train"]
    for name in ("preset", "config", "resume"):
        if getattr(args, name, None) is not None:
            parts += [f"--{name}", str(getattr(args, name))]
    for name, value in overrides_from_args(args).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        else:
            parts += [flag, "none" if value is None else str(value)]
    return shlex.join(parts)
