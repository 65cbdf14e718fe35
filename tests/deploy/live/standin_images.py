"""Stand-in base images, TEST SCAFFOLDING ONLY: no image registry is reachable from the machines that run
this suite, so the two images docker-compose.yml and the Dockerfile name are made here from Debian.

- `python:3.11-slim` (the Dockerfile's FROM): Debian bookworm minbase, its python3 (3.11) in a venv at
  /usr/local/python on PATH (as the real image has `python` and `pip` on PATH), and the host's CA file and
  a pip config naming it, so pip reaches PyPI the way the host does.
- the Redis service's image (`redis:7-alpine` in docker-compose.yml): bookworm minbase with Debian's
  redis-server 7.0, working in /data as the real image does.

Both carry the label org.torchweave.standin and a /STANDIN file saying so. They are never pushed anywhere
and nothing outside tests/deploy/live uses them. Each root filesystem is made once by debootstrap into
.cache/deploy/ and kept; the engine's data root keeps the imported images too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from shared.settings import PROJECT_ROOT
from tests.deploy.live.docker_host import DockerHost

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
PYTHON_TAG = "python:3.11-slim"
LABEL = "org.torchweave.standin"
NOTE = "TorchWeave test scaffolding: a stand-in for {tag}, built from Debian {suite} by tests/deploy/live."
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def redis_tag() -> str:
    """The Redis service's image, as docker-compose.yml names it."""
    spec = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    tag: str = spec["services"]["redis"]["image"]
    return tag


def ensure_images(host: DockerHost, cache: Path) -> None:
    """Both stand-ins in the engine, made from cached root filesystems where they exist."""
    if not _is_standin(host, PYTHON_TAG):
        rootfs = _debootstrap(cache, "python", ["python3", "python3-venv"])
        if not (rootfs / "usr/local/python/bin/pip").exists():
            _chroot(rootfs, "/usr/bin/python3", "-m", "venv", "/usr/local/python")
        shutil.copyfile(HOST_CA, rootfs / "etc/ssl/certs/ca-certificates.crt")
        (rootfs / "etc/pip.conf").write_text(
            "# TorchWeave test scaffolding: pip trusts the host's CA file, as the host's pip does.\n"
            "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ntimeout = 180\n"
        )
        path = "/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        _import(host, rootfs, PYTHON_TAG, [f"ENV PATH={path}", "ENV LANG=C.UTF-8", 'CMD ["python3"]'])
    tag = redis_tag()
    if not _is_standin(host, tag):
        rootfs = _debootstrap(cache, "redis", ["redis-server"])
        (rootfs / "data").mkdir(exist_ok=True)
        _import(host, rootfs, tag, ["WORKDIR /data", 'CMD ["redis-server"]'])


def _is_standin(host: DockerHost, tag: str) -> bool:
    out = host.docker(
        "image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', tag, check=False
    )
    return out.returncode == 0 and out.stdout.strip() != ""


def _debootstrap(cache: Path, name: str, packages: list[str]) -> Path:
    """A bookworm minbase root filesystem with the packages, made once under cache/rootfs-NAME."""
    rootfs = cache / f"rootfs-{name}"
    done = rootfs / ".debootstrap-done"
    if done.exists():
        return rootfs
    shutil.rmtree(rootfs, ignore_errors=True)  # a half-made one from an interrupted run
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--cache-dir={debs}", f"--include={','.join(packages)}",
         SUITE, str(rootfs), MIRROR],
        check=True, capture_output=True, timeout=1200,
    )  # fmt: skip
    for junk in ("var/lib/apt/lists", "usr/share/doc", "usr/share/man", "var/cache/apt/archives"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    done.touch()
    return rootfs


def _chroot(rootfs: Path, *cmd: str) -> None:
    subprocess.run(["chroot", str(rootfs), *cmd], check=True, capture_output=True, timeout=600)


def _import(host: DockerHost, rootfs: Path, tag: str, changes: list[str]) -> None:
    """The root filesystem as an image tagged `tag`, labelled and marked as a stand-in."""
    note = NOTE.format(tag=tag, suite=SUITE)
    (rootfs / "STANDIN").write_text(note + "\n")
    changes = [*changes, f'LABEL {LABEL}="{note}"']
    args = [a for change in changes for a in ("--change", change)]
    tar = subprocess.Popen(
        ["tar", "-C", str(rootfs), "--exclude=./.debootstrap-done", "-c", "."], stdout=subprocess.PIPE
    )
    out = subprocess.run(
        ["/usr/bin/docker", "import", *args, "-", tag], stdin=tar.stdout, env=host.env, capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip
    tar.wait()
    if out.returncode != 0 or tar.returncode != 0:
        raise RuntimeError(f"importing {tag} failed:\n{out.stdout}{out.stderr}")
