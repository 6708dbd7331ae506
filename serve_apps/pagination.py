"""The ``count/next/previous/results`` envelope with absolute page links."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request

from cvat_ray.storage.query import ListParams
from cvat_ray.storage.schemas.common import Page, Paginated

T = TypeVar("T")


def paginated(request: Request, params: ListParams, page: Page[T]) -> Paginated[T]:
    def link(number: int) -> str:
        return str(request.url.include_query_params(page=number))

    last = max(1, -(-page.count // params.page_size))
    return Paginated(
        count=page.count,
        next=link(params.page + 1) if params.page < last else None,
        previous=link(params.page - 1) if params.page > 1 else None,
        results=page.results,
    )
