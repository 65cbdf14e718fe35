"""Monitoring: Prometheus metrics read from Redis (heartbeats, queue depths). Never imports workers/."""
