"""Authentication (passwords, sessions, tokens) and authorization (policy decisions)."""
