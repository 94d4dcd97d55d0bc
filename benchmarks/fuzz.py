"""Fuzz every untrusted-input entry point of wsdeploy for a stated budget; write the figures as JSON.

Byte-level targets (`tests/fuzz/targets_bytes.py`: image bytes, label PNGs, checkpoint zips,
ONNX metadata, HTTP bodies, the client's answer decoders) run under atheris, coverage-guided
(libFuzzer on the instrumented wsdeploy, starlette and python-multipart code), from a corpus of
small valid seeds, one subprocess per target with `-runs=N -seed=S -timeout=T -rss_limit_mb=M`.
Structured targets (`tests/fuzz/targets_structured.py`: arrays and PIL images, model cards,
checkpoint payloads, dataset folders, YAML configs) run under hypothesis with `max_examples=N`
and a fixed seed. Without atheris, byte targets fall back to hypothesis mutating the same seeds
(recorded as `"engine": "hypothesis-mutation"`).

Every case runs under `tests/fuzz/harness.run_case`: a documented exception with a one-line
message (<= 2000 characters) or a correct result, else a failure (another exception, a bad
message, a wrong result, more than `--time-limit` CPU seconds, or raising RSS by more than
`--memory-limit-mb`). Failures are counted, not raised: the JSON gives per target the cases run,
the distinct failures (by kind, exception type and innermost wsdeploy frame) with one example
each, and `FIXED`, the failures earlier runs found that were fixed at their source, each with its
regression test.

    nice -n 10 python benchmarks/fuzz.py                     # committed budgets (1 thread)
    python benchmarks/fuzz.py --bytes-cases 2000 --structured-cases 200 --out /tmp/fuzz.json
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# Failures earlier runs found, each fixed where it arose and pinned by a regression test.
FIXED = [
    {"target": "image_bytes", "failure": "memory: a 100-byte PNG whose IDAT chunk declares 4 GB made OpenCV's "
     "libpng allocate 3.8 GB", "fix": "image_header checks every PNG chunk fits in the data",
     "test": "tests/fuzz/test_regressions.py::test_png_chunk_longer_than_the_file_is_refused_before_decoding"},
    {"target": "label_png", "failure": "memory/slow: the same chunk bomb through read_label_png (no pixel limit either)",
     "fix": "read_label_png checks the header, the chunks, a pixel limit and completeness like read_image",
     "test": "tests/fuzz/test_regressions.py::test_label_png_bombs_and_truncation_are_value_errors"},
    {"target": "label_png", "failure": "exception: IndexError on a PNG shorter than 26 bytes",
     "fix": "length checked before reading the colour type",
     "test": "tests/fuzz/test_regressions.py::test_label_png_bombs_and_truncation_are_value_errors"},
    {"target": "label_png", "failure": "exception: Pillow's UnidentifiedImageError / OSError / SyntaxError on "
     "corrupt palette PNGs", "fix": "wrapped into ValueError",
     "test": "tests/fuzz/test_regressions.py::test_corrupt_palette_png_is_a_value_error"},
    {"target": "checkpoint_zip", "failure": "exception: IndexError in load_untrusted when torch raised with an "
     "empty message", "fix": "_first_line falls back to the exception type",
     "test": "tests/fuzz/test_regressions.py::test_load_untrusted_survives_an_empty_error_message"},
    {"target": "client_answer", "failure": "exception: BadZipFile, EOFError, KeyError, NotImplementedError from "
     "decode_npz; cv2.error from decode_label_png on empty data", "fix": "both decoders raise ValueError only",
     "test": "tests/fuzz/test_regressions.py::test_client_decoders_raise_value_errors_only"},
    {"target": "client_answer", "failure": "memory/slow: a label PNG answer claiming a huge size",
     "fix": "decode_label_png checks the header against max_pixels; decode_npz checks declared array sizes",
     "test": "tests/fuzz/test_regressions.py::test_client_decoders_raise_value_errors_only"},
    {"target": "model_card", "failure": "message: errors quoted whole values (up to 350k characters)",
     "fix": "values quoted through a bounded repr", "test": "tests/fuzz/test_regressions.py::test_card_errors_are_short"},
    {"target": "model_card", "failure": "wrong_result: cards with losses/evaluation/created/palette/input_size of "
     "the wrong type, classes given as a string, NaN mean were accepted",
     "fix": "ModelCard validates the type of every field and that it is plain JSON",
     "test": "tests/fuzz/test_regressions.py::test_card_field_types_are_checked"},
    {"target": "checkpoint_payload", "failure": "memory: a card with arch_kwargs width 10**6 built the model "
     "before checking the weights", "fix": "load_checkpoint builds on the meta device, checks shapes, then assigns "
     "the file's tensors", "test": "tests/fuzz/test_regressions.py::test_a_card_asking_for_a_huge_model_is_refused_without_allocating"},
    {"target": "checkpoint_zip", "failure": "exception: zipfile.BadZipFile ('zipfiles that span multiple disks') "
     "escaped the container check another change added (zipfile.is_zipfile raises instead of returning False)",
     "fix": "caught and reported as a corrupt zip archive",
     "test": "tests/fuzz/test_regressions.py::test_a_zip_claiming_to_span_disks_is_a_value_error"},
    {"target": "yaml_config", "failure": "message: load_config errors carried PyYAML's multi-line text and quoted "
     "whole values (up to 530k characters)", "fix": "bounded repr; YAML errors as problem + line/column",
     "test": "tests/fuzz/test_fuzz_structured.py::test_structured_target_holds_its_contract[yaml_config]"},
    {"target": "http_body", "failure": "message: the 415 answer quoted the whole Content-Type (1100 characters "
     "in the example; a header may hold 16 kB)", "fix": "header values quoted cut to 100 characters",
     "test": "tests/fuzz/test_regressions.py::test_upload_errors_quote_headers_briefly"},
    {"target": "image_arrays", "failure": "exception: OSError (file name too long) from read_image on a long str",
     "fix": "path reads wrap OSError into ValueError",
     "test": "tests/fuzz/test_regressions.py::test_unreadable_paths_are_value_errors"},
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bytes-cases", type=int, default=100_000, help="cases per byte-level target (default 100000)")
    p.add_argument("--structured-cases", type=int, default=10_000, help="cases per structured target (default 10000)")
    p.add_argument("--targets", nargs="*", default=None, help="target names (default: all)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--time-limit", type=float, default=2.0, help="CPU seconds per case (default 2)")
    p.add_argument("--memory-limit-mb", type=float, default=512.0, help="RSS growth allowed per case (default 512)")
    p.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto",
                   help="byte-level engine (auto: atheris when it imports)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz.json"))
    p.add_argument("--merge", action="store_true",
                   help="replace only the targets run in an existing --out file (each target records its command)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one atheris target
    p.add_argument("--report", default=None, help=argparse.SUPPRESS)
    return p.parse_args()


class Recorder:
    """Counts cases and keeps the first example of each distinct failure."""

    def __init__(self) -> None:
        self.cases = 0
        self.failures: dict[str, dict] = {}

    def add(self, failure, data) -> None:
        from tests.fuzz.harness import describe

        self.cases += 1
        if failure is None:
            return
        entry = self.failures.setdefault(
            failure.signature, {"signature": failure.signature, "count": 0, "detail": failure.detail[:300],
                                "example": describe(data, 400)})
        entry["count"] += 1

    def summary(self) -> dict:
        return {"cases": self.cases, "distinct_failures": len(self.failures), "failures": list(self.failures.values())}


# -- atheris worker (one byte-level target per process) --------------------------------------
def atheris_worker(args: argparse.Namespace) -> None:
    import atheris

    with atheris.instrument_imports(include=["wsdeploy", "starlette.formparsers", "python_multipart", "multipart"]):
        import wsdeploy.backends.metadata  # noqa: F401
        import wsdeploy.checkpoint  # noqa: F401
        import wsdeploy.data.image_header  # noqa: F401
        import wsdeploy.data.image_io  # noqa: F401
        import wsdeploy.serving.body  # noqa: F401
        import wsdeploy.serving.formats  # noqa: F401
        import wsdeploy.training.state  # noqa: F401
        try:
            import python_multipart  # noqa: F401
            import starlette.formparsers  # noqa: F401
        except ImportError:
            pass
    import torch

    torch.set_num_threads(1)
    from tests.fuzz.harness import run_case, warm_up
    from tests.fuzz.targets_bytes import BYTE_TARGETS, seeds

    target = BYTE_TARGETS[args.worker]
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-corpus-{target.name}-"))
    corpus_seeds = seeds(target.name)
    for i, data in enumerate(corpus_seeds):
        (corpus / f"seed{i}").write_bytes(data)
    warm_up(target, corpus_seeds)
    recorder = Recorder()
    report = Path(args.report)

    def write_report() -> None:
        tmp = report.with_suffix(".tmp")
        tmp.write_text(json.dumps(recorder.summary()))
        os.replace(tmp, report)

    def one_input(data: bytes) -> None:
        failure = run_case(target, data, time_limit=args.time_limit, memory_limit_mb=args.memory_limit_mb)
        recorder.add(failure, data)
        if failure is not None or recorder.cases % 1000 == 0:
            write_report()

    max_len = max(4096, 2 * max(len(s) for s in corpus_seeds))
    argv = [sys.argv[0], f"-runs={args.bytes_cases}", f"-seed={args.seed}", f"-max_len={max_len}",
            f"-timeout={int(max(10, 10 * args.time_limit))}", "-rss_limit_mb=6144", "-print_final_stats=1",
            "-close_fd_mask=2", str(corpus)]
    import atexit

    atexit.register(write_report)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def run_atheris(name: str, args: argparse.Namespace) -> dict:
    report = Path(tempfile.mkdtemp(prefix="fuzz-report-")) / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--report", str(report),
           "--bytes-cases", str(args.bytes_cases), "--seed", str(args.seed), "--time-limit", str(args.time_limit),
           "--memory-limit-mb", str(args.memory_limit_mb)]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, errors="replace")
    seconds = time.time() - t0
    result = json.loads(report.read_text()) if report.exists() else {"cases": 0, "distinct_failures": 0, "failures": []}
    tail = [line for line in proc.stderr.splitlines() if line.startswith(("#", "Done", "stat::", "==", "ALARM", "SUMMARY"))]
    if proc.returncode != 0:  # a libFuzzer timeout / out-of-memory / a crash of the process itself
        crash = next((line for line in proc.stderr.splitlines() if "ERROR: libFuzzer" in line or "ALARM" in line),
                     f"exit status {proc.returncode}")
        result["failures"].append({"signature": f"process | {crash[:120]}", "count": 1, "detail": proc.stderr[-600:]})
        result["distinct_failures"] += 1
    result.update(engine="atheris", seconds=round(seconds, 1), libfuzzer=[line for line in tail if line.startswith(("Done", "stat::"))][-8:])
    return result


# -- hypothesis runs -------------------------------------------------------------------------
def run_hypothesis(target, strategy, cases: int, args: argparse.Namespace, engine: str, warm: list) -> dict:
    from hypothesis import HealthCheck, Phase, given, seed, settings

    from tests.fuzz.harness import run_case, warm_up

    recorder = Recorder()
    warm_up(target, warm)

    @seed(args.seed)
    @settings(max_examples=cases, database=None, deadline=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate])
    @given(strategy)
    def one(value) -> None:
        failure = run_case(target, value, time_limit=args.time_limit, hard_limit=5 * args.time_limit,
                           memory_limit_mb=args.memory_limit_mb)
        recorder.add(failure, value)

    t0 = time.time()
    one()
    return {**recorder.summary(), "engine": engine, "seconds": round(time.time() - t0, 1)}


def main() -> None:
    args = parse_args()
    if args.worker:
        atheris_worker(args)
        return
    import torch

    torch.set_num_threads(1)
    from tests.fuzz.targets_bytes import BYTE_TARGETS, seeds
    from tests.fuzz.targets_structured import STRATEGIES, STRUCTURED_TARGETS, warm_inputs
    from tests.fuzz.test_fuzz_bytes import mutated_seeds
    from wsdeploy.environment import library_versions, machine_info

    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    names = args.targets or [*BYTE_TARGETS, *STRUCTURED_TARGETS]
    unknown = sorted(set(names) - set(BYTE_TARGETS) - set(STRUCTURED_TARGETS))
    if unknown:
        raise SystemExit(f"unknown targets {unknown}; choose from {[*BYTE_TARGETS, *STRUCTURED_TARGETS]}")
    command = " ".join(shlex.quote(a) for a in [sys.executable.rsplit("/", 1)[-1], *sys.argv])
    results = {}
    for name in names:
        if name in BYTE_TARGETS:
            if engine == "atheris":
                results[name] = run_atheris(name, args)
            else:
                results[name] = run_hypothesis(BYTE_TARGETS[name], mutated_seeds(name), args.bytes_cases, args,
                                               "hypothesis-mutation", seeds(name))
            results[name]["kind"] = "bytes"
        else:
            results[name] = run_hypothesis(STRUCTURED_TARGETS[name], STRATEGIES[name], args.structured_cases, args,
                                           "hypothesis", warm_inputs(name))
            results[name]["kind"] = "structured"
        r = results[name]
        r["command"] = command
        print(f"{name:20s} {r['cases']:>8d} cases {r['seconds']:>8.1f} s  {r['distinct_failures']} distinct failures",
              flush=True)
        for f in r["failures"]:
            print(f"    {f['count']:>6d} x {f['signature']}: {f['detail'][:160]}", flush=True)
    fixed = list(FIXED)
    if args.merge and Path(args.out).is_file():  # read at the end: two runs may share the file
        previous = json.loads(Path(args.out).read_text())
        results = {**previous["targets"], **results}
        known = {(f["target"], f["failure"]) for f in fixed}
        fixed += [f for f in previous.get("fixed", []) if (f["target"], f["failure"]) not in known]
    out = {
        "benchmark": "fuzz",
        "command": command,
        "machine": machine_info(),
        "versions": library_versions(extra=("atheris", "hypothesis", "pillow", "starlette", "python-multipart", "pyyaml")),
        "threads": 1,
        "settings": {"bytes_cases": args.bytes_cases, "structured_cases": args.structured_cases, "seed": args.seed,
                     "time_limit_cpu_s": args.time_limit, "memory_limit_mb": args.memory_limit_mb,
                     "byte_engine": engine},
        "targets": results,
        "open_failures": sum(r["distinct_failures"] for r in results.values()),
        "cases_total": sum(r["cases"] for r in results.values()),
        "fixed": fixed,
    }
    from wsdeploy.atomic import atomic_write_text

    atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}: {out['open_failures']} open failures, {len(fixed)} fixed earlier")


if __name__ == "__main__":
    main()
