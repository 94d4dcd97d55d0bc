"""Fixtures for the model tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_intra_op_thread() -> Iterator[None]:
    # These models are tiny (width 16, inputs of a few dozen pixels): per-op work is
    # microseconds, and with several OpenMP threads on a busy CPU each op waits on its
    # threads' barrier, making a forward pass ~200x slower (1.5 s instead of 7 ms measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
