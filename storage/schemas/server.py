"""``/api/server`` shapes."""

from __future__ import annotations

from pydantic import BaseModel


class About(BaseModel):
    name: str
    description: str
    version: str
    logo_url: str
    subtitle: str
