"""The OpenAI-compatible routes: /v1/completions and /v1/chat/completions (/v1/models is in api/models/).

Each choice is one request on the same queue, engine and token stream as /v1/requests, so a
streamed OpenAI request is also resumable: its request ids come back in `X-Request-Id`.
"""

from __future__ import annotations

from flask import Blueprint, Response

from api.bodies import parse_body
from api.generation.limits import Choice
from api.generation.submit import enqueue, prepare
from api.openai.response import OpenAIResponse
from api.openai.schemas import ChatCompletionRequest, CompletionRequest
from api.route_docs import documented

bp = Blueprint("openai", __name__, url_prefix="/v1")


@bp.post("/completions")
@documented(body=CompletionRequest, description="a completion, or SSE chunks when stream", errors=(404, 429))
def completions() -> Response:
    """OpenAI completions, streaming or not; n choices per prompt."""
    req = parse_body(CompletionRequest)
    prompts = req.prompts()
    choices = [
        Choice(req.sampling(i), prompt=p) if isinstance(p, str) else Choice(req.sampling(i), prompt_ids=p)
        for p in prompts
        for i in range(req.n)
    ]
    gens = enqueue(
        prepare(req.model, choices, cancel_on_disconnect=req.stream, schema_param=req.schema_param)
    )
    echoed = [p if isinstance(p, str) else None for p in prompts for _ in range(req.n)] if req.echo else None
    return OpenAIResponse(req, gens, chat=False, num_prompts=len(prompts), echoed=echoed).respond()


@bp.post("/chat/completions")
@documented(body=ChatCompletionRequest, description="a chat completion, or SSE chunks", errors=(404, 429))
def chat_completions() -> Response:
    """OpenAI chat completions, streaming or not; messages rendered with the model's chat template."""
    req = parse_body(ChatCompletionRequest)
    messages, tools = [m.to_message() for m in req.messages], req.template_tools()
    choices = [Choice(req.sampling(i), messages=messages, tools=tools) for i in range(req.n)]
    gens = enqueue(
        prepare(req.model, choices, cancel_on_disconnect=req.stream, schema_param=req.schema_param)
    )
    return OpenAIResponse(req, gens, chat=True, num_prompts=1).respond()
