"""Generation requests: submit, status, cancel, the one-shot stream and the no-batching baseline."""
