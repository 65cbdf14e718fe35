"""The layers hold: import-linter's contracts in pyproject.toml (also run by `make lint`)."""

from __future__ import annotations

import subprocess

from devtools.servers import VENV_BIN
from shared.settings import PROJECT_ROOT


def test_import_contracts_are_kept() -> None:
    out = subprocess.run(
        [str(VENV_BIN / "lint-imports")], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout
