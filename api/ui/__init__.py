"""The web UI: one static page (chat, request timeline, models, monitoring) served by the API itself."""
