"""Running Lua scripts by their SHA (loaded once per server), and the Lua pieces several scripts share."""

from __future__ import annotations

from typing import Any

from redis.commands.core import Script

# Lua: end a request with an error event after its last event, and mark it failed; its record, stream and
# timeline expire after ttl. Scripts that fail a request start with this.
FAIL_FN = """
local function fail(hash, stream, timeline, message, now, ttl)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  local index = 0
  if #last > 0 then index = tonumber(string.match(last[1][1], '^(%d+)')) end
  local event = cjson.encode({v=1, type='error', index=index, message=message})
  redis.call('XADD', stream, (index + 1) .. '-0', 'data', event)
  redis.call('HSET', hash, 'status', '"failed"', 'finish_reason', '"error"',
             'error', cjson.encode(message), 'finished_at', now)
  redis.call('EXPIRE', hash, ttl)
  redis.call('EXPIRE', stream, ttl)
  redis.call('EXPIRE', timeline, ttl)
end
"""

FINAL = "status == '\"finished\"' or status == '\"cancelled\"' or status == '\"failed\"'"

_scripts: dict[str, Script] = {}


def run_script(client: Any, source: str, keys: list[str], *args: Any) -> Any:
    """Run a script on a client or a pipeline (EVALSHA; a server that lacks it loads it first)."""
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = Script(client, source)
    return script(keys=keys, args=args, client=client)
