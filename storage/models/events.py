"""The analytics events outbox: CVAT event rows waiting to be shipped to ClickHouse.

Rows are written in the transaction of the change that produced them (server events) or of
the ``POST /api/events`` call (client events), and deleted by the events sink only after
ClickHouse acknowledged them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cvat_ray.storage.models.base import Base

# SQLite only auto-increments an INTEGER PRIMARY KEY.
_Id = BigInteger().with_variant(Integer(), "sqlite")


class EventOutbox(Base):
    """One event row (the ClickHouse ``events`` columns as a JSON object)."""

    __tablename__ = "events_outbox"
    __table_args__ = (Index("ix_events_outbox_source_id", "source", "id"),)

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    # "server" or "client": over the cap only client rows are dropped
    source: Mapped[str] = mapped_column(String(16))
    row: Mapped[str] = mapped_column(Text)
