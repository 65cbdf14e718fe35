"""Which model names a request or a load may use: a built-in model, a Hub id, or a directory under MODEL_DIR.

Checked in the API (a clear 400) and again in the worker before anything is read from disk.
"""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import BUILTIN_MODELS, Settings

# owner/name or name: letters, digits, '-', '_', '.', never starting with '.' or '-' (no '..').
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class InvalidModelName(ValueError):
    pass


def is_local_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name in (".", "..")


def check_model_name(name: str, settings: Settings) -> str:
    """The name unchanged when it is safe to load; InvalidModelName saying why otherwise.

    A local path must resolve (symlinks included) to a directory under MODEL_DIR; a Hub id must
    match owner/name with no '..'. Built-in names are always allowed.
    """
    if name in BUILTIN_MODELS:
        return name
    if not name or len(name) > 512 or "\x00" in name:
        raise InvalidModelName("a model name must be 1 to 512 characters")
    if is_local_path(name):
        root = settings.model_dir.resolve()
        target = (root / name).resolve() if not name.startswith("/") else Path(name).resolve()
        if not target.is_relative_to(root):
            raise InvalidModelName(f"model path {name!r} is outside MODEL_DIR")
        return name
    if ".." in name or not _HUB_ID.match(name):
        raise InvalidModelName(f"{name!r} is not a Hub model id (owner/name) nor a path under MODEL_DIR")
    return name


def local_model_dir(name: str, settings: Settings) -> Path | None:
    """The directory a local-path name points to (under MODEL_DIR), or None for a Hub id or built-in."""
    if name in BUILTIN_MODELS or not is_local_path(name):
        return None
    return (settings.model_dir / name).resolve() if not name.startswith("/") else Path(name).resolve()
