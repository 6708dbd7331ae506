"""``/api/server`` shapes."""

from __future__ import annotations

from pydantic import BaseModel


class About(BaseModel):
    name: str
    description: str
    version: str
    logo_url: str
    subtitle: str


class Plugins(BaseModel):
    """Which optional parts of the server are on (CVAT's upper-case keys)."""

    ANALYTICS: bool
    MODELS: bool


class UserAgreementRead(BaseModel):
    """An agreement CVAT's UI shows at registration (its camelCase wire names)."""

    name: str
    url: str
    required: bool
    textPrefix: str
    urlDisplayText: str
    value: bool = False
