"""rediss://, as managed Redis serves it (Heroku's with a self-signed certificate): the API and a worker
run through TLS with REDIS_TLS_VERIFY=0, and a client that verifies refuses the certificate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devtools.clients import indexed, read_sse, submit
from devtools.embedded_redis import EmbeddedRedis
from devtools.servers import start_api, start_worker
from devtools.tls_proxy import TlsProxy
from shared import bus


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsProxy]:
    plain = EmbeddedRedis(tmp_path_factory.mktemp("redis-tls")).start()
    proxy = TlsProxy(plain.port, tmp_path_factory.mktemp("tls")).start()
    yield proxy
    proxy.stop()
    plain.stop()


def test_the_stack_runs_over_rediss(tls_redis: TlsProxy, server_env: dict[str, str], log_dir: Path) -> None:
    env = {**server_env, "REDIS_URL": tls_redis.url, "REDIS_TLS_VERIFY": "0"}
    worker = start_worker(env, log_dir, "tls-worker")
    api, url = start_api(env, log_dir)
    try:
        sub = submit(url, prompt="over TLS", max_new_tokens=5, temperature=0)
        events = indexed(read_sse(sub["stream_url"]))
        assert events[-1].event == "done" and events[-1].data["usage"]["completion_tokens"] == 5
    finally:
        api.stop()
        worker.stop()


def test_a_verifying_client_refuses_a_self_signed_certificate(tls_redis: TlsProxy) -> None:
    with pytest.raises(redis.ConnectionError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        bus.connect(tls_redis.url).ping()
    assert bus.connect(tls_redis.url, tls_verify=False).ping()
