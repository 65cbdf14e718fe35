"""Token streams: one Redis reader per process fanned out to subscribers, relayed as SSE or WebSocket."""
