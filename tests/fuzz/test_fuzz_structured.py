"""Short, fixed-seed fuzz runs of the structured targets (the CI budget; benchmarks/fuzz.py runs the big one)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

pytest.importorskip("PIL", reason="the image target builds PIL images (test extra)")
pytest.importorskip("yaml", reason="the config target writes YAML (test extra)")

from tests.fuzz.harness import run_case, warm_up  # noqa: E402
from tests.fuzz.targets_structured import STRATEGIES, STRUCTURED_TARGETS, warm_inputs  # noqa: E402

CASES = {"image_arrays": 150, "model_card": 150, "checkpoint_payload": 60, "dataset_folder": 60, "yaml_config": 80}


# training/config.py quotes whole values and multi-line YAML errors in its messages; it is being
# rewritten (House: trainer), the failures are reported to its owner. strict: passes -> remove.
_OPEN: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=_OPEN[n])) if n in _OPEN else n
     for n in sorted(STRUCTURED_TARGETS)],
)
def test_structured_target_holds_its_contract(name):
    target = STRUCTURED_TARGETS[name]
    warm_up(target, warm_inputs(name))

    @settings(max_examples=CASES[name], derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(STRATEGIES[name])
    def check(value) -> None:
        failure = run_case(target, value, time_limit=2.0, hard_limit=10.0, memory_limit_mb=512)
        assert failure is None, f"{failure.signature}: {failure.detail}"

    check()
