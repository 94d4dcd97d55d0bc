"""What every test shares: one OpenMP thread per test process, and the opt-in exhaustive tests.

One thread, set before torch is imported and inherited by every subprocess a test starts:
`make test` runs the suite in one worker process per core (pytest-xdist), and each worker
running torch's default of one thread per core would oversubscribe the cores. Most tests run
tiny models whose per-op work is microseconds, where extra threads only wait on each other's
barrier (a width-16 forward pass measured ~200x slower with two threads on a busy 2-core CPU).
The determinism and resume tests compare bits between a test and the subprocesses it starts,
which needs the same thread count (the same kernels) on both sides. Every test starts at one
thread (`_one_torch_thread`); a module- or session-scoped fixture, built before that, still sets
its own.

`@pytest.mark.exhaustive` marks tests whose coverage a faster test already gives (e.g. every
ResNet depth of a head whose shallow variant is tested); they run only with
`WSDEPLOY_SLOW_TESTS=1` (which also adds the AOTInductor compile of tests/wsdeploy/test_backends.py)
and are reported as skipped with that reason otherwise.
"""
from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # in case a plugin imported torch before this file set the variables

RUN_EXHAUSTIVE = os.environ.get("WSDEPLOY_SLOW_TESTS") == "1"


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    """Back to one thread before every test: an in-process command may have changed it for the
    whole process (`wsdeploy bench --threads`, the server's `torch_threads`)."""
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if RUN_EXHAUSTIVE:
        return
    skip = pytest.mark.skip(reason="exhaustive (a faster test covers the same code); set WSDEPLOY_SLOW_TESTS=1")
    for item in items:
        if "exhaustive" in item.keywords:
            item.add_marker(skip)
