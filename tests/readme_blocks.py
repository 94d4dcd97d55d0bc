"""Parse the README's fenced blocks and the `--help` epilogs into commands for tests/test_readme.py.

The convention (also in the README's Development section):

- a ```bash / ```sh block is run line by line; other languages are not;
- an HTML comment on the line just before the opening fence marks the block:
  `<!-- readme-test: skip REASON -->`, `<!-- readme-test: needs cuda tensorrt shared docker -->`,
  `<!-- readme-test: server wsdeploy serve model.pt -->` (a server for the block's curl lines);
- `\\` continuations are joined, `# comments` dropped (shlex, quotes respected).
"""
from __future__ import annotations

import argparse
import importlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Block", "Command", "help_examples", "readme_blocks", "split_commands"]

_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*(\w[\w-]*)\s*(.*?)\s*-->\s*$")
RUN_LANGUAGES = ("bash", "sh", "shell")
NEEDS = ("cuda", "tensorrt", "shared", "docker")


@dataclass
class Command:
    line: int  # 1-based line of the command's first line in its source
    text: str  # continuations joined
    words: list[str]  # shlex words, comments dropped


@dataclass
class Block:
    source: str  # "README.md" or "wsdeploy train --help"
    line: int  # line of the opening fence (1-based)
    language: str
    body: list[str]
    marker: str | None = None  # skip | needs | server
    marker_value: str = ""
    commands: list[Command] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.source}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.language in RUN_LANGUAGES


def split_commands(lines: list[str], first_line: int) -> list[Command]:
    """Join `\\` continuations; one Command per non-empty, non-comment logical line."""
    commands: list[Command] = []
    buffer: list[str] = []
    start = first_line
    for offset, raw in enumerate(lines):
        if not buffer:
            start = first_line + offset
        stripped = raw.rstrip()
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1])
            continue
        buffer.append(stripped)
        text = " ".join(part.strip() for part in buffer).strip()
        buffer = []
        if not text or text.startswith("#"):
            continue
        try:
            words = shlex.split(text, comments=True)
        except ValueError as exc:  # reported by the runner as a failure of this line
            words, text = ["<unparseable>", str(exc)], f"{text}  [shell syntax: {exc}]"
        commands.append(Command(start, text, words))
    if buffer:
        raise ValueError(f"line {start}: a '\\' continuation at the end of the block")
    return commands


def readme_blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown file, with its marker and (bash) commands."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, language = i, match.group(2).lower()
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        if j == len(lines):
            raise ValueError(f"{path.name}:{start + 1}: a code fence that is never closed")
        block = Block(path.name, start + 1, language, lines[start + 1:j])
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = _MARKER.match(lines[k]) if k >= 0 else None
        if marker:
            block.marker, block.marker_value = marker.group(1), marker.group(2)
            if block.marker not in ("skip", "needs", "server"):
                raise ValueError(f"{path.name}:{k + 1}: unknown readme-test marker {block.marker!r}")
            if block.marker == "skip" and not block.marker_value:
                raise ValueError(f"{path.name}:{k + 1}: 'readme-test: skip' needs a reason")
            unknown = [n for n in block.marker_value.split() if n not in NEEDS]
            if block.marker == "needs" and unknown:
                raise ValueError(f"{path.name}:{k + 1}: unknown needs {unknown}; known: {NEEDS}")
        if block.runnable:
            block.commands = split_commands(block.body, start + 2)
        blocks.append(block)
        i = j + 1
    return blocks


def help_examples(command: str) -> Block | None:
    """The `examples:` lines of `wsdeploy COMMAND --help` (the epilog), as one bash block."""
    from wsdeploy.cli.main import COMMANDS

    parser = argparse.ArgumentParser(prog=f"wsdeploy {command}")
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    epilog = parser.epilog or ""
    if "examples:" not in epilog:
        return None
    body = epilog.split("examples:", 1)[1].splitlines()
    block = Block(f"wsdeploy {command} --help", 0, "bash", body)
    block.commands = split_commands(body, 1)  # a line that is not a command fails in the runner
    return block
