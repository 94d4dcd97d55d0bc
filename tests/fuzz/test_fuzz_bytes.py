"""Short, fixed-seed fuzz runs of the byte-level targets (the CI budget; benchmarks/fuzz.py runs the big one).

The inputs are the targets' valid seeds mutated by hypothesis (byte flips, deletions, insertions,
truncations, splices, interesting integers in headers), so each case starts inside a parser.
"""
from __future__ import annotations

from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import run_case, warm_up
from tests.fuzz.targets_bytes import BYTE_TARGETS, seeds

pytest.importorskip("PIL", reason="the seeds include GIFs written with Pillow (test extra)")
pytest.importorskip("starlette", reason='the HTTP body target needs the serve extra: pip install "wsdeploy[serve]"')

CASES = {"checkpoint_zip": 60}  # per target (default 150): the folder stays under a minute on 2 cores

_INTERESTING = [b"\x00", b"\xff", b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x80\x00", b"\n", b"\r\n--"]


@lru_cache(maxsize=None)
def _seeds(name: str) -> tuple[bytes, ...]:
    return tuple(seeds(name))


@st.composite
def _mutated(draw, name: str) -> bytes:
    pool = _seeds(name)
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 5))
        at = draw(st.integers(0, len(data)))
        if op == 0 and data:  # overwrite a byte
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == 1:  # delete a run
            del data[at : at + draw(st.integers(1, 32))]
        elif op == 2:  # insert bytes
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == 3:  # truncate
            del data[at:]
        elif op == 4:  # an interesting integer over a header field
            value = draw(st.sampled_from(_INTERESTING))
            data[at : at + len(value)] = value
        else:  # splice with another seed
            other = draw(st.sampled_from(pool))
            data[at:] = other[draw(st.integers(0, len(other))):]
    return bytes(data)


def mutated_seeds(name: str) -> st.SearchStrategy[bytes]:
    """Mutations of target `name`'s seeds (also the byte engine of benchmarks/fuzz.py without atheris)."""
    return st.one_of(st.sampled_from(_seeds(name)), _mutated(name), st.binary(max_size=64))


@pytest.mark.parametrize("name", sorted(BYTE_TARGETS))
def test_byte_target_holds_its_contract(name):
    target = BYTE_TARGETS[name]
    warm_up(target, list(_seeds(name)))

    @settings(max_examples=CASES.get(name, 150), derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated_seeds(name))
    def check(data: bytes) -> None:
        failure = run_case(target, data, time_limit=2.0, hard_limit=10.0, memory_limit_mb=512)
        assert failure is None, f"{failure.signature}: {failure.detail}"

    check()


@pytest.mark.parametrize("name", sorted(BYTE_TARGETS))
def test_every_seed_is_accepted_or_refused_cleanly(name):
    target = BYTE_TARGETS[name]
    for data in _seeds(name):
        assert run_case(target, data, time_limit=30.0) is None
