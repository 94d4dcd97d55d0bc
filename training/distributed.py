"""DDP plumbing: who am I (from torchrun's environment), which device, and two collectives.

Provenance: nanoGPT's `train.py` (MIT): a run is distributed when torchrun set `RANK`; each
process takes `LOCAL_RANK`'s GPU; only rank 0 logs and saves. The environment is read once, by
`DistContext.from_env(os.environ, ...)` at the top of `train`, and passed on as a value.

    torchrun --nproc_per_node 4 -m wsdeploy train --data DIR ...       # NCCL on CUDA
    torchrun --nproc_per_node 2 -m wsdeploy train --device cpu ...     # gloo on CPU
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistContext", "all_gather_objects", "all_reduce_sum"]


@dataclasses.dataclass(frozen=True)
class DistContext:
    """This process's place in the run.

    Attributes:
        rank, world_size, local_rank: from torchrun (0, 1, 0 when not distributed).
        device: the torch device this process trains on.
        distributed: True when running under torchrun with WORLD_SIZE > 1.
        owns_group: this context initialised the process group (and `close` destroys it); False
            when the caller had already initialised one.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    distributed: bool = False
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, shows progress and writes files."""
        return self.rank == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, device: str = "auto") -> "DistContext":
        """Set up from torchrun's variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`) in `env`.

        Initialises the default process group (NCCL on CUDA, gloo on CPU) when `WORLD_SIZE` > 1.

        Args:
            env: the process environment, normally `os.environ`.
            device: "auto" (CUDA when available), "cpu" or "cuda"; under torchrun "cuda" means
                `cuda:LOCAL_RANK`.

        Raises:
            ValueError: an unknown `device`, "cuda" without CUDA, or malformed torchrun variables.
        """
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but CUDA is not available; use device='cpu'")
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        try:
            rank = int(env.get("RANK", "0"))
            world_size = int(env.get("WORLD_SIZE", "1"))
            local_rank = int(env.get("LOCAL_RANK", "0"))
        except ValueError:
            raise ValueError(
                "malformed torchrun variables: RANK={!r} WORLD_SIZE={!r} LOCAL_RANK={!r}".format(
                    env.get("RANK"), env.get("WORLD_SIZE"), env.get("LOCAL_RANK")
                )
            ) from None
        if not 0 <= rank < world_size:
            raise ValueError(f"RANK must be in [0, WORLD_SIZE={world_size}), got {rank}")
        torch_device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(torch_device)
        distributed = world_size > 1
        owns_group = distributed and not dist.is_initialized()
        if owns_group:
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        return cls(rank, world_size, local_rank, torch_device, distributed, owns_group)

    def barrier(self) -> None:
        """Wait for every rank (no-op when not distributed)."""
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum `tensor` over ranks in place and return it (unchanged when not distributed)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's `obj`, in rank order (`[obj]` when not distributed)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
