"""A TLS front for a plain Redis, with a self-signed certificate: how managed Redis (Heroku's rediss://)
looks to a client. For the tests; the certificate comes from the openssl command line."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
from pathlib import Path

from devtools.embedded_redis import free_port


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key for 127.0.0.1, made by openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


class TlsProxy:
    """Accepts TLS on a free loopback port and relays each connection to 127.0.0.1:target_port."""

    def __init__(self, target_port: int, directory: Path) -> None:
        self.target_port = target_port
        self.port = free_port()
        cert, key = self_signed(directory)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = threading.Event()

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def start(self) -> TlsProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._closed.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                raw, _ = self._listener.accept()
                client = self.context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.close()
