"""What crosses Redis: messages, key names, settings. Imports stdlib, pydantic and redis only."""
