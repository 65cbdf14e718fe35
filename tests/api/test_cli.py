"""`torchweave keys create` refuses what POST /v1/keys refuses, before touching Redis."""

from __future__ import annotations

import pytest

from api.cli import main


@pytest.mark.parametrize(
    ("argv", "field"),
    [(["--rpm", "0"], "--rpm"), (["--tpm", "-5"], "--tpm"), (["--name", ""], "--name")],
)
def test_create_refuses_invalid_limits(
    argv: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["keys", "create", "--name", "ops", *argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{field}: ")
