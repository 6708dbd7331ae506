"""The path guard: what :func:`safe_join` accepts and refuses, and that storage/ builds no
path from an outside name any other way."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.paths import relative_parts, safe_join

ROOT = Path(__file__).resolve().parents[2]


def test_accepts_relative_names_and_normalises(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a/b.jpg") == tmp_path / "a" / "b.jpg"
    assert safe_join(tmp_path, "./a//b.jpg") == tmp_path / "a" / "b.jpg"
    assert safe_join(tmp_path, "a..b/c...jpg") == tmp_path / "a..b" / "c...jpg"
    assert safe_join(tmp_path, "", allow_root=True) == tmp_path
    # a link that stays inside is fine
    (tmp_path / "real").mkdir()
    (tmp_path / "inside").symlink_to(tmp_path / "real")
    assert safe_join(tmp_path, "inside/x.jpg") == tmp_path / "inside" / "x.jpg"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/etc/passwd", "absolute"),
        ("../x.jpg", "'..'"),
        ("a/../../x.jpg", "'..'"),
        ("a/../b.jpg", "'..'"),  # refused even when it would stay inside
        ("a/b/..", "'..'"),
        ("a\x00.jpg", "NUL"),
        ("", "names no file"),
        ("./", "names no file"),
        ("x" * 5000, "too long"),
    ],
)
def test_refuses_unsafe_names(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        safe_join(tmp_path, name, field="server_files")
    assert list(caught.value.fields) == ["server_files"]


def test_refuses_links_that_lead_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "out").symlink_to(outside)
    (root / "file-out").symlink_to(outside / "secret")
    for name in ("out/x.jpg", "out", "file-out"):
        with pytest.raises(InvalidInput, match="outside its folder"):
            safe_join(root, name)
    assert not list(outside.iterdir())


def test_relative_parts_is_lexical() -> None:
    assert str(relative_parts("a/./b//c.jpg")) == "a/b/c.jpg"
    assert str(relative_parts("", allow_empty=True)) == "."


# --- structure: every outside name becomes a path through safe_join ------------------------------

# Right operands of ``path / <operand>`` in storage/ that are the server's own names, not
# names from outside: constants, f-strings of ids, and these attribute/variable names.
_OWN_NAMES = {
    "str",  # str(<an id>)
    "rel",  # archives: already through the guard in _target
}


def _own(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant | ast.JoinedStr):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in _OWN_NAMES
    return isinstance(node, ast.Name) and node.id in _OWN_NAMES


def test_storage_builds_no_path_from_an_outside_name() -> None:
    """Outside names (request names, bucket keys, archive members, upload names, backup
    entries) must go through ``safe_join``: in the media, service and backup modules, ``/`` joins only constants,
    f-strings and ids, and nothing uses ``os.path.join`` or ``joinpath``."""
    offenders = []
    modules = [
        *(ROOT / "storage" / "media").glob("*.py"),
        *(ROOT / "storage" / "services").glob("*.py"),
        *(ROOT / "storage" / "backups").glob("*.py"),
        ROOT / "storage" / "instance_backup.py",
    ]
    for path in sorted(modules):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                if _is_path_expr(node.left) and not _own(node.right):
                    offenders.append(f"{where} {ast.unparse(node)}")
            if isinstance(node, ast.Attribute) and node.attr == "joinpath":
                offenders.append(f"{where} joinpath")
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "join"
                and ast.unparse(node.value) == "os.path"
            ):
                offenders.append(f"{where} os.path.join")
    assert not offenders, "\n".join(offenders)


def _is_path_expr(node: ast.expr) -> bool:
    """Heuristic: ``a / b`` is a path join unless its left side reads like a number."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    # arithmetic in storage/ divides numbers named like these
    text = ast.unparse(node)
    numeric = ("size", "count", "total", "len(", "width", "height", "done", "fps", "rate")
    return not any(word in text for word in numeric) and not isinstance(node, ast.BinOp)


def test_refuses_a_link_to_the_filesystem_root(tmp_path: Path) -> None:
    # the guard follows the links that exist when the path is made
    (tmp_path / "raw").mkdir()
    os.symlink("/", tmp_path / "raw" / "root")
    with pytest.raises(InvalidInput):
        safe_join(tmp_path / "raw", "root/etc/x.jpg")
