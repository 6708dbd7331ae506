"""Fetching ``remote_files``: one URL at a time through the outbound guard
(:mod:`cvat_ray.cluster.outbound`: public addresses only unless allow-listed, the connection
pinned to the checked address, redirects followed by hand), saved under a name made safe.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.outbound import OutboundGuard
from cvat_ray.cluster.paths import safe_join


def _safe_name(url: str, disposition: str | None) -> str:
    name = ""
    if disposition:
        match = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', disposition)
        if match:
            name = unquote(match.group(1))
    if not name:
        name = unquote(PurePosixPath(urlsplit(url).path).name)
    name = re.sub(r"[^\w.\- ]", "_", name).strip(" .") or "file"
    return name[:200]


def download(
    url: str, dest_dir: Path, *, guard: OutboundGuard, timeout: float, max_bytes: int
) -> Path:
    """Fetch ``url`` into ``dest_dir`` (name from the URL or Content-Disposition, made
    unique); at most ``max_bytes``. Raises InvalidInput with a readable reason."""
    with guard.open(
        "GET", url, timeout=timeout, headers={"User-Agent": "cvat-ray", "Accept": "*/*"}
    ) as response:
        if response.status != 200:
            raise InvalidInput(f"{url}: the server answered {response.status}.")
        length = response.header("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise InvalidInput(f"{url}: the file is larger than {max_bytes} bytes.")
        name = _safe_name(response.url, response.header("Content-Disposition"))
        dest = _unique(dest_dir, name)
        size = 0
        with dest.open("wb") as out:
            for block in response.blocks():
                size += len(block)
                if size > max_bytes:
                    raise InvalidInput(f"{url}: the file is larger than {max_bytes} bytes.")
                out.write(block)
        return dest


def _unique(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    candidate = safe_join(directory, name)
    stem, suffix = candidate.stem, candidate.suffix
    n = 1
    while candidate.exists():
        candidate = safe_join(directory, f"{stem}_{n}{suffix}")
        n += 1
    return candidate
