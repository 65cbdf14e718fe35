"""A model repository served over HTTP on loopback the way the Hugging Face Hub answers huggingface_hub
(repo info, file tree, HEAD and ranged GET of /resolve/), so a test can watch a real download, cut it
short and see it resume. Only the routes huggingface_hub 2.x calls for snapshot_download."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


@contextmanager
def serve_repo(repo_id: str, files: dict[str, bytes], cut_at: int) -> Iterator[tuple[str, list[str]]]:
    """(endpoint URL, Range headers received). The first full GET of each .safetensors file stops after
    `cut_at` bytes, as a dropped connection does."""
    ranges: list[str] = []
    cut: set[str] = set()

    def sha(name: str) -> str:
        """The Hub's ETag: a large (LFS) file's SHA-256, a small file's git SHA-1."""
        digest = hashlib.sha256 if name.endswith(".safetensors") else hashlib.sha1
        return digest(files[name]).hexdigest()

    def lfs(name: str) -> dict[str, object]:
        if not name.endswith(".safetensors"):
            return {}
        return {"lfs": {"oid": sha(name), "size": len(files[name]), "pointerSize": 134}}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path.startswith(f"/api/models/{repo_id}/revision/"):
                info = {"id": repo_id, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]}
                return self.reply(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
            if path.startswith(f"/api/models/{repo_id}/tree/"):
                tree = [
                    {"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest(), **lfs(n)}
                    for n, d in files.items()
                ]
                return self.reply(200, json.dumps(tree).encode(), {"Content-Type": "application/json"})
            name = path.removeprefix(f"/{repo_id}/resolve/").split("/", 1)[-1]
            if name not in files:
                return self.reply(404, b"{}", {})
            data = files[name]
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{sha(name)}"', "X-Linked-Etag": f'"{sha(name)}"',
                       "X-Linked-Size": str(len(data))}  # fmt: skip
            if self.command == "GET" and (wanted := self.headers.get("Range")):
                ranges.append(wanted)
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                return self.reply(206, data[start:], headers)
            if self.command == "GET" and name.endswith(".safetensors") and name not in cut:
                cut.add(name)
                self.send_response(200)
                for key, value in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data[:cut_at])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return None
            return self.reply(200, data, headers)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", ranges
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
