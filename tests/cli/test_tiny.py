"""WSDEPLOY_TINY: the README test's toy-size switch clamps, never raises, and says so."""
from __future__ import annotations

import argparse

from wsdeploy.cli import tiny


def test_enabled_values():
    assert tiny.enabled({"WSDEPLOY_TINY": "1"}) and tiny.enabled({"WSDEPLOY_TINY": "yes"})
    assert not any(tiny.enabled({"WSDEPLOY_TINY": v}) for v in ("", "0", "false", "no"))
    assert not tiny.enabled({})


def test_clamps_lower_and_never_raise(capsys):
    train = argparse.Namespace(command="train", crop_size=512, batch_size=1)
    changed = tiny.apply(train)
    assert train.steps == 2 and train.crop_size == 64 and train.batch_size == 1 and "batch_size" not in changed
    assert "WSDEPLOY_TINY is set" in capsys.readouterr().err
    bench = argparse.Namespace(command="bench", size=(480, 360), batch=[1, 4, 16], repeats=20, warmup=3)
    tiny.apply(bench)
    assert bench.size == (64, 64) and bench.batch == [1, 2] and bench.repeats == 1 and bench.warmup == 0
    square = argparse.Namespace(command="bench", size=32, batch=[1], repeats=1, warmup=0)
    assert tiny.apply(square) == {} and square.size == 32
    network = argparse.Namespace(command="annotate", method="network", steps=None, size=None, crf_iterations=None)
    tiny.apply(network)
    assert (network.steps, network.size) == (3, 64)
    cut = argparse.Namespace(command="annotate", method=None, steps=None, size=None, crf_iterations=None)
    assert tiny.apply(cut) == {} and cut.steps is None
    assert tiny.apply(argparse.Namespace(command="segment")) == {}
