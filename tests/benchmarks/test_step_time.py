"""benchmarks/step_time.py's CPU-time figure: (CPU of the long run - CPU of the short run) / the
difference in steps, so a fixed start-up cost cancels. A fake interpreter stands in for
`python -m wsdeploy train`: it burns a fixed start-up plus a fixed CPU time per step and writes
the trainer's log."""
from __future__ import annotations

import json
import stat
import sys

import pytest

from tests.benchmarks.test_records import _load

_FAKE = """#!{python}
import json, sys, time
args = sys.argv[1:]
steps = int(args[args.index("--steps") + 1])
out = args[args.index("--out-dir") + 1]

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

burn(0.3)  # start-up: imports, data, model
with open(out + "/train_log.jsonl", "w") as log:
    for step in range(1, steps + 1):
        burn(0.01)
        if step % 5 == 0:
            log.write(json.dumps({{"step": step, "step_time_s": 0.01}}) + "\\n")
"""


def test_cpu_seconds_per_step_cancel_the_start_up(tmp_path):
    fake = tmp_path / "fake_python"
    fake.write_text(_FAKE.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "data").mkdir()
    bench = _load("step_time")
    out = tmp_path / "times.json"
    assert bench.main(["--data", str(tmp_path / "data"), "--variant", f"fake={fake}", "--repeats", "1",
                       "--steps", "40", "--log-every", "5", "--cpu-time", "--short-steps", "10",
                       "--json", str(out), "--", "--losses", "pce"]) == 0
    result = json.loads(out.read_text())
    run = result["runs"]["fake"][0]
    assert run["cpu_s"] == pytest.approx(0.3 + 40 * 0.01, abs=0.15)  # start-up included
    assert result["median_cpu_s_per_step"]["fake"] == pytest.approx(0.01, abs=0.003)  # start-up cancelled
    assert "--steps 10" in run["short_command"] and "--steps 40" in run["command"]


def test_short_steps_must_be_below_steps(tmp_path, capsys):
    bench = _load("step_time")
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--data", "d", "--variant", "a=python", "--steps", "40", "--cpu-time", "--short-steps", "40",
                          "--json", "x.json"])
    assert exit_info.value.code == 2 and "--short-steps must be >= 1 and below --steps" in capsys.readouterr().err
