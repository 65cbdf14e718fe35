"""Model search on the Hugging Face Hub through huggingface_hub; a clear 503 when the Hub is unreachable."""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any

from api.errors import ApiError
from shared.redact import redact

log = logging.getLogger(__name__)

SEARCH_TIMEOUT_S = 10.0
# huggingface_hub retries a failed request with backoff for about 20 s; the probe answers in seconds.
PROBE_TIMEOUT_S = 3.0
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="hub-search")


def _unreachable(exc: BaseException | str) -> ApiError:
    log.warning("Hub search failed: %s", exc)
    return ApiError(
        503,
        f"the Hugging Face Hub cannot be reached from this server: {redact(str(exc))}",
        code="hub_unreachable",
    )


def search_models(query: str, limit: int) -> list[dict[str, Any]]:
    """Hub models matching `query`, most downloaded first: id, downloads, likes, parameters, pipeline tag."""
    from huggingface_hub import HfApi, constants, get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=PROBE_TIMEOUT_S)
    except Exception as exc:  # DNS failure, refused, timed out: no network to the Hub
        raise _unreachable(exc) from None

    def run() -> list[Any]:
        return list(
            HfApi().list_models(
                search=query,
                limit=limit,
                sort="downloads",
                expand=["downloads", "likes", "pipeline_tag", "safetensors", "usedStorage"],
            )
        )

    try:
        found = _pool.submit(run).result(timeout=SEARCH_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        raise _unreachable(f"no answer within {SEARCH_TIMEOUT_S:.0f} s") from None
    except Exception as exc:
        raise _unreachable(exc) from None
    return [
        {
            "id": m.id,
            "downloads": m.downloads,
            "likes": m.likes,
            "parameters": m.safetensors.total if m.safetensors else None,
            "size_bytes": getattr(m, "used_storage", None),
            "pipeline_tag": m.pipeline_tag,
        }
        for m in found
    ]
