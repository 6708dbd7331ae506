"""The TUS side of CVAT's uploads, one place for every route that takes one (task data,
backup restores, annotation and dataset imports).

A route creates an upload (``POST`` with ``Tus-Resumable`` and ``Upload-Length``: 201 and an
absolute ``Location``), then the client ``PATCH``es chunks from ``Upload-Offset`` and may
``HEAD`` the upload to resume. The routes find their own :class:`UploadArea` and
:class:`TusState` (each kind of upload has its own folder and permission check); what they
answer is written here.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.bodies import BINARY, described_body
from cvat_ray.serve_apps.media import stream_tus
from cvat_ray.storage.media.uploads import TusState, UploadArea

RESUMABLE = {"Tus-Resumable": "1.0.0"}
# a PATCH's body, for /api/schema
CHUNK_BODY = described_body({"application/offset+octet-stream": BINARY})
CHUNK_TYPES = ("application/offset+octet-stream",)


def upload_length(request: Request) -> int:
    """The ``Upload-Length`` of a TUS creation (``upload_action`` saw it is there)."""
    try:
        return int(request.headers["upload-length"])
    except ValueError as exc:
        raise InvalidInput("Upload-Length must be an integer.") from exc


def created(
    request: Request, settings: Settings, state: TusState, patch_route: str, **params: Any
) -> Response:
    """201 for a new upload: ``Location`` is the PATCH route's absolute URL, on the
    configured public URL when there is one (the server may sit behind a proxy)."""
    url = request.url_for(patch_route, upload_id=state.upload_id, **params)
    public = settings.server.public_url
    location = public.rstrip("/") + url.path if public else str(url)
    return Response(
        status_code=201,
        headers={
            **RESUMABLE,
            "Location": location,
            "Upload-Filename": state.filename,
            "Upload-Offset": str(state.offset),
        },
    )


async def append(
    request: Request, area: UploadArea, state: TusState, upload_id: str, offset: int
) -> Response:
    """A PATCH: the body appended from ``offset`` (204 with the new offset), or 409 with the
    current offset when ``offset`` is not it."""
    if offset != state.offset:
        return JSONResponse(
            {"detail": f"Upload-Offset {offset} does not match {state.offset}."},
            status_code=409,
            headers={**RESUMABLE, "Upload-Offset": str(state.offset)},
        )
    state = await stream_tus(request, area, upload_id, offset)
    return Response(status_code=204, headers={**RESUMABLE, "Upload-Offset": str(state.offset)})


def progress(state: TusState) -> Response:
    """A HEAD: the upload's current offset and length (clients resume from the offset)."""
    return Response(
        status_code=200,
        headers={
            **RESUMABLE,
            "Upload-Offset": str(state.offset),
            "Upload-Length": str(state.length),
            "Cache-Control": "no-store",
        },
    )
