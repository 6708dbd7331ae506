"""Pydantic wire models: one per wire shape, shared by routers, services and webhook payloads."""
