"""The path guard: the one place that turns a name from outside into a path under a root.

Outside names are everything the server did not make up itself: names in a request
(``server_files``, upload and TUS file names), object keys a bucket listing returns, archive
members, and later backup and dataset entries. :func:`safe_join` accepts only a relative
name that stays under its root: no absolute path, no ``..`` component, no NUL, and nothing
that resolves outside the root through a symbolic link that already exists there. Every such
name is refused with an ``InvalidInput`` (a 400, or a failed background request) before a
byte is read or written.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from cvat_ray.cluster.errors import InvalidInput

# Longest outside name accepted (PATH_MAX on Linux); longer ones are refused, not truncated.
MAX_NAME_LENGTH = 4096


def relative_parts(
    name: str, *, field: str | None = None, allow_empty: bool = False
) -> PurePosixPath:
    """``name`` as a clean relative POSIX path (``.`` and empty components dropped), or an
    ``InvalidInput``: absolute paths, ``..`` components, NUL characters and over-long names
    are refused. Purely lexical: no file system access."""
    shown = name if len(name) <= 200 else name[:200] + "..."
    if "\x00" in name:
        raise InvalidInput(f"{shown!r}: a path must not contain NUL characters.", field=field)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"{shown!r}: the path is too long.", field=field)
    if name.startswith("/"):
        raise InvalidInput(f"{shown!r}: an absolute path is not allowed here.", field=field)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(f"{shown!r}: a path must not contain '..'.", field=field)
    if not parts and not allow_empty:
        raise InvalidInput(f"{shown!r}: the path names no file.", field=field)
    return PurePosixPath(*parts)


def safe_join(root: Path, name: str, *, field: str | None = None, allow_root: bool = False) -> Path:
    """``root / name`` when ``name`` is a relative path that stays under ``root``, symlinks
    included; otherwise an ``InvalidInput`` naming the offending name.

    The returned path is the lexical join (not resolved), so the caller writes or reads
    exactly where it asked. ``allow_root`` accepts an empty name (the root itself)."""
    relative = relative_parts(name, field=field, allow_empty=allow_root)
    joined = root / relative
    base = root.resolve()
    # resolve() follows the links that exist now (a target that does not exist yet is
    # resolved as far as it exists), so a link planted under the root cannot lead out.
    target = joined.resolve()
    if target != base and not target.is_relative_to(base):
        shown = name if len(name) <= 200 else name[:200] + "..."
        raise InvalidInput(f"{shown!r}: the path leads outside its folder.", field=field)
    return joined


def is_safe_name(name: str) -> bool:
    """Whether :func:`relative_parts` accepts ``name`` (for filters that skip, not fail)."""
    try:
        relative_parts(name)
    except InvalidInput:
        return False
    return True
