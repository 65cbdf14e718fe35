"""The README's shell examples, run as printed against the session's real server, so they keep working.

Each `$ ` line of a chosen ```console block (with its `\\` continuation lines) runs in one bash session, with
localhost:8000 pointed at the test server. What the README prints under a command must appear in its output,
in order: a JSON line (after an SSE `data: ` prefix) matches one with the same keys and the same status-like
values (ids, text and timings differ from run to run); any other line matches exactly; `...` skips.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
STABLE_KEYS = {"status", "finish_reason", "object", "state", "code", "type"}  # compared by value


def console_block(heading: str) -> list[tuple[str, list[str]]]:
    """(command, printed output lines) for each `$ ` line of the first console block under `heading`."""
    text = README.read_text()
    section = text[text.index(f"\n{heading}\n") :]
    block = section.split("```console\n", 1)[1].split("\n```", 1)[0]
    commands: list[tuple[str, list[str]]] = []
    lines = iter(block.splitlines())
    for line in lines:
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):
                command += "\n" + next(lines)
            commands.append((command, []))
        elif commands:
            commands[-1][1].append(line)
    return commands


def run_block(commands: list[tuple[str, list[str]]], url: str) -> list[list[str]]:
    """Run the commands in one bash session against `url`; each command's output lines."""
    address = urlsplit(url).netloc
    marker = "@@@ next command @@@"
    script = "\n".join(f"echo '{marker}'\n{cmd.replace('localhost:8000', address)}" for cmd, _ in commands)
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return [part.splitlines() for part in run.stdout.split(marker + "\n")[1:]]


def as_json(line: str) -> Any:
    try:
        return json.loads(line.removeprefix("data: "))
    except json.JSONDecodeError:
        return None


def matches(printed: str, got: str) -> bool:
    want, have = as_json(printed), as_json(got)
    if isinstance(want, dict) and isinstance(have, dict):
        return want.keys() == have.keys() and all(want[k] == have[k] for k in STABLE_KEYS & want.keys())
    return printed == got


def assert_printed(command: str, printed: list[str], got: list[str]) -> None:
    rest = iter(got)
    for line in printed:
        if line in ("", "...") or line.startswith("#"):
            continue
        assert any(matches(line, g) for g in rest), f"{command}\nprinted: {line}\ngot: {got}"


@pytest.mark.parametrize("heading", ["## Streams that lose nothing"])
def test_readme_console_block_works_as_printed(live_url: str, heading: str) -> None:
    commands = console_block(heading)
    assert commands
    outputs = run_block(commands, live_url)
    assert len(outputs) == len(commands)
    for (command, printed), got in zip(commands, outputs, strict=True):
        print(f"$ {command}\n" + "\n".join(got))
        assert_printed(command, printed, got)
