"""Keys on, against real API processes: a request belongs to the key that made it (another key gets 404
on every way in, an admin sees it); the command line makes and revokes keys; nothing is public by
accident (a public bind without credentials refuses to start, Flower asks for its password)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests
import simple_websocket

from devtools.clients import connect_ws, read_sse, read_ws, submit_as
from devtools.embedded_redis import free_port
from devtools.servers import VENV_BIN, Process, wait_for
from shared.settings import PROJECT_ROOT
from tests.adversarial.conftest import child_pids
from tests.e2e.conftest import ADMIN_KEY, KeyedCluster, auth


def test_a_request_is_its_keys_alone_and_an_admins(keyed: KeyedCluster) -> None:
    alice, bob = keyed.key("alice"), keyed.key("bob")
    sub = submit_as(keyed.url, auth(alice), prompt="mine", max_new_tokens=4, temperature=0)
    rid, url = sub["id"], f"{keyed.url}/v1/requests/{sub['id']}"
    assert read_sse(sub["stream_url"], headers=auth(alice))[-1].event == "done"
    assert requests.get(url, headers=auth(alice), timeout=10).status_code == 200
    for method, path in (("GET", ""), ("GET", "/stream"), ("DELETE", "")):
        resp = requests.request(method, url + path, headers=auth(bob), timeout=10)
        assert resp.status_code == 404, (method, path, resp.text)
        assert "unknown or has expired" in resp.json()["error"]["message"]  # the same as a missing id
    messages = read_ws(sub["websocket_url"], headers=auth(bob))
    assert messages[0]["event"] == "error" and "unknown" in messages[0]["message"]
    assert requests.get(url, headers=auth(ADMIN_KEY), timeout=10).json()["id"] == rid
    assert (
        requests.get(
            f"{keyed.urls[1]}{url.removeprefix(keyed.url)}", headers=auth(bob), timeout=10
        ).status_code
        == 404
    )


def test_a_websocket_without_a_key_is_refused_before_the_upgrade(keyed: KeyedCluster) -> None:
    sub = submit_as(keyed.url, auth(keyed.key("dave")), prompt="x", max_new_tokens=2)
    with pytest.raises(simple_websocket.ConnectionError):
        connect_ws(sub["websocket_url"])


def run_cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [str(VENV_BIN / "torchweave"), *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout


def test_the_command_line_makes_lists_and_revokes_keys(keyed: KeyedCluster) -> None:
    made = run_cli(keyed.env, "keys", "create", "--name", "cli-user", "--role", "user", "--rpm", "60")
    key_id, secret = made.split()[2], made.strip().splitlines()[-1]
    assert requests.get(f"{keyed.url}/v1/auth/whoami", headers=auth(secret), timeout=10).json()["rpm"] == 60
    listed = run_cli(keyed.env, "keys", "list")
    assert key_id in listed and "cli-user" in listed and secret not in listed
    run_cli(keyed.env, "keys", "revoke", key_id)
    assert requests.get(f"{keyed.url}/v1/auth/whoami", headers=auth(secret), timeout=10).status_code == 401


@pytest.mark.parametrize(
    ("argv", "needs"),
    [
        (["gunicorn", "-c", "api/gunicorn_conf.py", "api.wsgi:app"], "ADMIN_API_KEY"),
        (["python", "-m", "monitoring.exporter"], "METRICS_TOKEN"),
        (["python", "-m", "monitoring.flower"], "FLOWER_BASIC_AUTH"),
    ],
)
def test_a_public_bind_without_credentials_refuses_to_start(
    server_env: dict[str, str], argv: list[str], needs: str
) -> None:
    env = {
        k: v
        for k, v in server_env.items()
        if k not in ("ADMIN_API_KEY", "METRICS_TOKEN", "FLOWER_BASIC_AUTH")
    }
    env.update(
        HOST="0.0.0.0", PORT=str(free_port()), METRICS_PORT=str(free_port()), FLOWER_PORT=str(free_port())
    )
    out = subprocess.run(
        [str(VENV_BIN / argv[0]), *argv[1:]],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert needs in out.stderr + out.stdout and "HOST=127.0.0.1" in out.stderr + out.stdout


def test_flower_asks_for_its_password(server_env: dict[str, str], log_dir: Path) -> None:
    port = free_port()
    env = {**server_env, "FLOWER_PORT": str(port), "FLOWER_BASIC_AUTH": "ops:s3cret"}
    flower = Process("flower", [str(VENV_BIN / "python"), "-m", "monitoring.flower"], env, log_dir)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: requests.get(url, timeout=2).status_code in (200, 401), 60, "Flower", flower)
        for path in ("", "metrics", "healthcheck"):
            assert requests.get(url + path, timeout=10).status_code == 401, path
            assert requests.get(url + path, auth=("ops", "wrong"), timeout=10).status_code == 401, path
            assert requests.get(url + path, auth=("ops", "s3cret"), timeout=10).status_code == 200, path
        # ps shows no password: neither the process's command line nor its children's.
        for pid in [flower.pid, *child_pids(flower.pid)]:
            assert b"s3cret" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        flower.stop()


def test_prompts_stay_out_of_the_logs(keyed: KeyedCluster, log_dir: Path) -> None:
    secret = keyed.key("private")
    prompt = "MY-PRIVATE-PROMPT-7f3a"
    sub = submit_as(keyed.url, auth(secret), prompt=prompt, max_new_tokens=3, temperature=0)
    read_sse(sub["stream_url"], headers=auth(secret))
    bad = requests.post(f"{keyed.url}/v1/requests", json={"prompt": prompt, "bogus": 1}, headers=auth(secret))
    assert bad.status_code == 400 and prompt not in bad.text
    logs = {p.name: p.read_text(errors="replace") for p in log_dir.glob("*.log")}
    assert sub["id"] in "".join(logs.values())  # the logs do speak of the request, by its id
    assert [name for name, text in logs.items() if prompt in text] == []


def test_the_logs_hold_one_line_per_record_and_no_key_from_a_url(keyed: KeyedCluster, log_dir: Path) -> None:
    forged = "FORGED-7c1d [2026-01-01 00:00:00 +0000] [1] [INFO] admin logged in"
    in_url = "tw-SECRET-IN-A-URL-5b2e"
    # No key needed: the UI's page is public, and its path names a request id.
    assert requests.get(f"{keyed.url}/ui/requests/x%0A{forged}", timeout=10).status_code == 200
    assert requests.get(f"{keyed.url}/v1/auth/whoami?api_key={in_url}", timeout=10).status_code == 401
    long_name = "m\r\n" + "x" * 250  # a refusal's message quotes the model name
    body = {"prompt": "p", "model": long_name}
    refused = requests.post(
        f"{keyed.url}/v1/requests", json=body, headers=auth(keyed.key("logs")), timeout=10
    )
    assert refused.status_code in (400, 404), refused.text

    def logged() -> str:
        return "".join(p.read_text(errors="replace") for p in log_dir.glob("*.log"))

    wait_for(lambda: "FORGED-7c1d" in logged() and "whoami?api_key=" in logged(), 30, "the lines in the logs")
    lines = logged().splitlines()
    assert [line for line in lines if line.startswith("FORGED-7c1d")] == []  # never a line of its own
    assert any("x\\nFORGED-7c1d" in line for line in lines)  # escaped, still there to read
    assert in_url not in logged() and any("api_key=<redacted>" in line for line in lines)
    refusals = [line for line in lines if "POST /v1/requests refused" in line and "m\\r\\nxxx" in line]
    assert refusals and all(len(line) < 600 and "chars)" in line for line in refusals), refusals
