"""The API's boundaries: it never loads torch or workers/, and says 503 when Redis or workers are missing."""

from __future__ import annotations

import subprocess
import sys

from api import create_app
from devtools.embedded_redis import free_port
from shared.settings import PROJECT_ROOT, Settings


def test_api_process_never_imports_torch_or_workers() -> None:
    code = (
        "import sys; from api import create_app; app = create_app(); "
        "from api import wsgi; "
        "heavy = ('torch', 'workers', 'transformers'); "
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy]; "
        "assert not bad, bad; print('clean')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"


def test_health_is_503_without_a_live_worker(redis_url: str) -> None:
    # A database no worker of this session writes to: Redis answers, no heartbeat is there.
    app = create_app(Settings(redis_url=redis_url.rsplit("/", 1)[0] + "/7"))
    resp = app.test_client().get("/health")
    assert resp.status_code == 503
    assert resp.json == {"status": "unavailable", "reason": "no live worker"}
    assert app.test_client().get("/model").status_code == 503


def test_redis_down_gives_503_with_retry_after() -> None:
    app = create_app(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    client = app.test_client()
    health = client.get("/health")
    assert health.status_code == 503 and "redis unreachable" in (health.get_json() or {})["reason"]
    submit = client.post("/v1/requests", json={"prompt": "hi"})
    assert submit.status_code == 503
    assert submit.headers["Retry-After"] == "5"
    error = (submit.get_json() or {})["error"]
    assert error["code"] == "redis_unavailable"
    assert "127.0.0.1" not in error["message"] and "redis://" not in error["message"]  # the log has them


def test_json_routes_take_only_json(redis_url: str) -> None:
    app = create_app(Settings(redis_url=redis_url))
    resp = app.test_client().post("/v1/requests", data='{"prompt": "hi"}', content_type="text/plain")
    assert resp.status_code == 415
    assert "application/json" in (resp.get_json() or {})["error"]["message"]


def test_the_baseline_is_off_by_default(redis_url: str) -> None:
    app = create_app(Settings(redis_url=redis_url, enable_nobatch=False))
    resp = app.test_client().post("/v1/generate_nobatch", json={"prompt": "hi"})
    assert resp.status_code == 404 and (resp.get_json() or {})["error"]["code"] == "disabled"
