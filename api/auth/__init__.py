"""Who is calling: API keys (hashed in Redis), browser sessions, roles, and the guard every request passes."""
