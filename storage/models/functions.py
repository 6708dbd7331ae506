"""Deployed functions (models): the registry every API replica lists and calls from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cvat_ray.storage.models.base import Base, UTCDateTime, utcnow


class LambdaFunction(Base):
    """One deployed function. ``spec`` is the validated spec (``FunctionSpec`` JSON, by
    alias); ``app_name`` is its Ray Serve application."""

    __tablename__ = "lambda_functions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # where the spec came from: a file path, "builtin", or "api"
    source: Mapped[str] = mapped_column(Text, default="")
    app_name: Mapped[str] = mapped_column(String(128))
    created_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
