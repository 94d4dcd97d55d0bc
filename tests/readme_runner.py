"""Runs the README's commands for tests/test_readme.py: one line (`wsdeploy` in-process with
WSDEPLOY_TINY=1, servers in subprocesses, curl against them, cheap checks of benchmark scripts,
pip extras and make targets) and one block (markers, placeholders). Convention: tests/readme_blocks.py.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import tomllib

from tests.readme_blocks import Block, Command

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SERVER_START_S = 90.0


@dataclass
class Outcome:
    status: str  # passed | skipped | failed
    detail: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process only (servers run in subprocesses)


# ---------------------------------------------------------------------------- one command
def _env_and_argv(words: list[str]) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    argv = list(words)
    while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
        key, value = argv.pop(0).split("=", 1)
        env[key] = value
    if argv and argv[0] == "time":
        argv.pop(0)
    if argv and argv[0] in ("python", "python3", ".venv/bin/python") and argv[1:3] == ["-m", "wsdeploy"]:
        argv = ["wsdeploy", *argv[3:]]
    if argv and argv[0] == ".venv/bin/wsdeploy":
        argv[0] = "wsdeploy"
    return env, argv


@contextlib.contextmanager
def _inside(folder: Path, env: dict[str, str]):
    old_cwd, old_env = Path.cwd(), dict(os.environ)
    os.chdir(folder)
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


def _run_wsdeploy(argv: list[str], env: dict[str, str], folder: Path) -> str | None:
    """Run `wsdeploy ...` in this process; None when it returned 0, else what went wrong."""
    from wsdeploy.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with _inside(folder, {**env, "WSDEPLOY_TINY": "1"}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
        except Exception as exc:  # noqa: BLE001 -- a crash is this line's failure, not the whole run's
            code = f"crashed: {type(exc).__name__}: {exc}"
    if code == 0:
        return None
    return f"exit {code}\nstderr: {err.getvalue()[-1500:]}\nstdout: {out.getvalue()[-500:]}"


def _check_script(argv: list[str]) -> str | None:
    """`python benchmarks/x.py ...`: not run (long); the file exists and defines every flag used.

    Reading the source instead of running `--help` keeps this cheap: importing a benchmark
    script costs seconds. Flags after a bare `--` are passed through to another command.
    """
    script = next((a for a in argv[1:] if a.endswith((".py", ".sh"))), None)
    if script is None or not (ROOT / script).is_file():
        return f"no such script: {script!r}"
    source = (ROOT / script).read_text(encoding="utf-8")
    if script.endswith(".sh"):
        result = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True, check=False)
        return None if result.returncode == 0 else f"bash -n {script}: {result.stderr}"
    try:
        compile(source, script, "exec")
    except SyntaxError as exc:
        return f"{script}: {exc}"
    after = argv[argv.index(script) + 1:]
    if "--" in after:
        after = after[:after.index("--")]
    flags = {a.split("=")[0] for a in after if a.startswith("--") and not any(c.isspace() for c in a)}
    missing = sorted(f for f in flags if f"\"{f}\"" not in source and f"'{f}'" not in source)
    return f"{script} defines no flag(s) {missing}" if missing else None


def _check_pip(argv: list[str]) -> str | None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = {re.split(r"[<>=!~ ]", r)[0].lower() for reqs in extras.values() for r in reqs}
    declared |= {re.split(r"[<>=!~ ]", r)[0].lower() for r in project["dependencies"]}
    for spec in [a for a in argv[2:] if not a.startswith("-")]:
        match = re.match(r"^(wsdeploy)\[([\w,-]+)\]$", spec)
        if match:
            unknown = [e for e in match.group(2).split(",") if e not in extras]
            if unknown:
                return f"pip install {spec}: no extra {unknown} in pyproject.toml (extras: {sorted(extras)})"
        elif spec.lower() not in declared and spec.lower().split("==")[0] not in declared:
            return f"pip install {spec}: not a requirement declared in pyproject.toml"
    return None


def _check_make(argv: list[str]) -> str | None:
    targets = set(re.findall(r"^([\w.-]+):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))
    wanted = [a for a in argv[1:] if "=" not in a and not a.startswith("-")]
    missing = [t for t in wanted if t not in targets]
    return f"make: no target(s) {missing} in the Makefile" if missing else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """`wsdeploy serve ...` in a subprocess on a free port, until /readyz answers 200."""

    def __init__(self, argv: list[str], env: dict[str, str], folder: Path) -> None:
        self.port = _free_port()
        argv = list(argv)
        if "--port" in argv:
            argv[argv.index("--port") + 1] = str(self.port)
        else:
            argv += ["--port", str(self.port)]
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", "WSDEPLOY_TINY": "1", **env}
        # the console script, not `python -m`: that would put the scratch folder (which holds a
        # wsdeploy/assets copy) first on sys.path and shadow the package
        script = Path(sys.executable).with_name("wsdeploy")
        program = [str(script)] if script.is_file() else [sys.executable, "-P", "-m", "wsdeploy"]
        self.process = subprocess.Popen([*program, *argv[1:]], cwd=folder, env=full_env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait_ready(self) -> str | None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"the server exited with {self.process.returncode}: {self.process.stdout.read()[-1500:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return None
            except OSError:
                time.sleep(0.2)
        return f"not ready within {SERVER_START_S:.0f} s"

    def stop(self) -> str | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return "did not stop within 30 s of SIGTERM"
        output = self.process.stdout.read()
        # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is a clean stop
        return None if self.process.returncode in (0, -signal.SIGTERM) else f"exit {self.process.returncode} after SIGTERM: {output[-800:]}"


def _run_curl(command: Command, server: _Server | None, folder: Path) -> str | None:
    if server is None:
        return "curl needs a server: mark the block <!-- readme-test: server wsdeploy serve ... -->"
    text = command.text.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}").replace("localhost:8000", f"127.0.0.1:{server.port}")
    text = re.sub(r"^curl ", "curl --fail --max-time 60 ", text)
    result = subprocess.run(["bash", "-c", text], cwd=folder, capture_output=True, text=True, timeout=90, check=False,
                            env={**os.environ, "WSDEPLOY_API_KEY": "s3cret"})
    return None if result.returncode == 0 else f"curl exit {result.returncode}: {result.stderr[-500:]}"


def _is_serve(command: Command) -> bool:
    return _env_and_argv(command.words)[1][:2] == ["wsdeploy", "serve"]


def _run_servers(commands: list[Command], folder: Path) -> tuple[Command | None, str | None]:
    """Start every `wsdeploy serve` line at once (they load in parallel), wait until each is
    ready, stop them all; (the first failing line, what went wrong) or (None, None)."""
    servers = []
    for command in commands:
        env, argv = _env_and_argv(command.words)
        servers.append((command, _Server(argv, env, folder)))
    failed: tuple[Command | None, str | None] = (None, None)
    try:
        for command, server in servers:
            failure = server.wait_ready()
            if failure and failed[0] is None:
                failed = (command, failure)
    finally:
        for command, server in servers:
            stopped = server.stop()
            if stopped and failed[0] is None:
                failed = (command, stopped)
    return failed


def _run_command(command: Command, folder: Path, server: _Server | None, in_help: bool) -> str | None:
    env, argv = _env_and_argv(command.words)
    if not argv:
        return None
    if argv[0] == "wsdeploy":
        if _is_serve(command):
            return _run_servers([command], folder)[1]
        return _run_wsdeploy(argv[1:], env, folder)
    if in_help:
        if argv[0] == "torchrun":
            return None  # DDP: tests/training/test_trainer.py runs two gloo processes
        return "a --help example line that is not a `wsdeploy` command (a missing '\\' continuation?)"
    if argv[0] in ("python", "python3", "bash") and len(argv) > 1:
        return _check_script(argv)
    if argv[0] == "pip" and argv[1:2] == ["install"]:
        return _check_pip(argv)
    if argv[0] == "make":
        return _check_make(argv)
    if argv[0] == "curl":
        return _run_curl(command, server, folder)
    return (f"{argv[0]!r} is not run by the README test: mark the block "
            "<!-- readme-test: skip REASON --> or <!-- readme-test: needs ... -->")


# ---------------------------------------------------------------------------- one block
def _missing_needs(names: list[str]) -> list[str]:
    missing = []
    for name in names:
        if name == "cuda":
            import torch

            ok = torch.cuda.is_available()
        elif name == "tensorrt":
            import importlib.util

            ok = importlib.util.find_spec("tensorrt") is not None
        elif name == "shared":
            ok = (SHARED / "data").is_dir()
        else:
            ok = shutil.which(name) is not None
        if not ok:
            missing.append({"shared": "../shared/data beside the checkout"}.get(name, name))
    return missing


def run_block(block: Block, folder: Path, *, in_help: bool = False) -> Outcome:
    start, cpu = time.perf_counter(), time.process_time()
    if block.marker == "skip":
        return Outcome("skipped", f"illustrative: {block.marker_value}")
    if block.marker == "needs":
        missing = _missing_needs(block.marker_value.split())
        if missing:
            return Outcome("skipped", f"needs {', '.join(missing)}")
    for command in block.commands:
        if re.search(r"(^|\s)(\.\.\.|\[--|<[\w.]+>)", command.text):
            return Outcome("failed", f"line {command.line}: a placeholder, not a command: {command.text}")
    server = None
    if any(c.words[:1] == ["curl"] for c in block.commands) and shutil.which("curl") is None:
        return Outcome("skipped", "needs curl")
    if block.marker == "server":
        env, argv = _env_and_argv(block.marker_value.split())
        server = _Server(argv, env, folder)
        failure = server.wait_ready()
        if failure:
            server.stop()
            return Outcome("failed", f"server {block.marker_value!r}: {failure}")
    try:
        pending = list(block.commands)
        while pending:
            command = pending.pop(0)
            if _is_serve(command):  # consecutive serve lines start together
                group = [command]
                while pending and _is_serve(pending[0]):
                    group.append(pending.pop(0))
                failed, failure = _run_servers(group, folder)
                command = failed or command
            else:
                failure = _run_command(command, folder, server, in_help)
            if failure:
                return Outcome("failed", f"line {command.line}: {command.text}\n{failure}",
                               time.perf_counter() - start, time.process_time() - cpu)
    finally:
        if server is not None:
            server.stop()
    return Outcome("passed", seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu)
