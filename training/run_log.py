"""The run's log: one JSON object per line in `train_log.jsonl`, mirrored to TensorBoard when
the `tensorboard` package is installed. Only rank 0 creates one.

Entries: training `{"step", "loss", "<term>"..., "lr", "step_time_s"}` and evaluation
`{"step", "split", "miou", "pixel_accuracy", "mean_accuracy", "per_class_iou", ...}`.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from wsdeploy.atomic import atomic_write_text

__all__ = ["RunLog"]

logger = logging.getLogger(__name__)

LOG_NAME = "train_log.jsonl"


class RunLog:
    """Append-only JSONL log (+ TensorBoard scalars).

    Args:
        out_dir: the run folder; the log is `out_dir/train_log.jsonl`, TensorBoard events go to
            `out_dir/tensorboard/`.
        tensorboard: write TensorBoard events if `torch.utils.tensorboard` can be imported.
        resume_step: None for a fresh run (an old log is replaced); else the step a resumed run
            continues from: entries after it (from the interrupted run) are dropped.
    """

    def __init__(self, out_dir: Path, *, tensorboard: bool, resume_step: int | None) -> None:
        self.path = Path(out_dir) / LOG_NAME
        kept = ""
        if resume_step is not None and self.path.is_file():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            kept = "".join(
                line + "\n" for line in lines if line.strip() and json.loads(line)["step"] <= resume_step
            )
        atomic_write_text(self.path, kept)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.info("tensorboard is not installed; logging to %s only", self.path)
            else:
                self._writer = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=resume_step)

    def write(self, entry: dict[str, Any]) -> None:
        """Append `entry` (must hold an int "step"); numbers also go to TensorBoard."""
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        if self._writer is not None:
            prefix = "eval" if "miou" in entry else "train"
            for key, value in entry.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    if math.isfinite(value):
                        self._writer.add_scalar(f"{prefix}/{key}", value, entry["step"])

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()
