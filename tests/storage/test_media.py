"""Media building blocks without HTTP: caches (in-process and Redis), archives, context image
names, credential encryption. (The outbound guard's own tests are tests/cluster/.)"""

from __future__ import annotations

import os
import stat
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.media.archives import UnpackBudget, unpack
from cvat_ray.storage.media.cache import MemoryCache, RedisCache
from cvat_ray.storage.media.cloud import Cipher, CloudAccess
from cvat_ray.storage.media.formats import kind_of, related_owner
from tests.conftest import IN_CI


def test_memory_cache_is_an_lru_capped_in_bytes() -> None:
    cache = MemoryCache(max_bytes=10)
    cache.put("d1-1:a", b"1234", "x/a")
    cache.put("d1-1:b", b"5678", "x/b")
    assert cache.get("d1-1:a") == (b"1234", "x/a")  # a is now the most recent
    cache.put("d2-1:c", b"90ab", "x/c")
    assert cache.get("d1-1:b") is None and cache.size == 8
    cache.put("too-big", b"x" * 11, "x")
    assert cache.get("too-big") is None
    cache.invalidate("d1-")
    assert cache.get("d1-1:a") is None and cache.get("d2-1:c") is not None


@pytest.fixture
def redis_cache() -> Iterator[RedisCache]:
    import redis

    try:
        redis.Redis(socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis is required in CI: {exc}")
        pytest.skip(f"Redis not available: {exc}")
    cache = RedisCache(
        "redis://127.0.0.1:6379/0",
        max_bytes=100,
        ttl_s=60,
        prefix=f"cvat-ray-test-{uuid.uuid4().hex[:8]}:",
    )
    yield cache
    cache.clear()


def test_redis_cache_evicts_least_recently_used(redis_cache: RedisCache) -> None:
    for i in range(5):
        redis_cache.put(f"d1-1:{i}", bytes([i]) * 30, "image/jpeg")
        if i == 2:
            assert redis_cache.get("d1-1:0") is not None  # touch 0: keep it
    assert redis_cache.size <= 100
    kept = {i for i in range(5) if redis_cache.get(f"d1-1:{i}") is not None}
    assert 0 in kept and 4 in kept and 1 not in kept
    assert redis_cache.get("d1-1:4") == (bytes([4]) * 30, "image/jpeg")
    redis_cache.invalidate("d1-")
    assert all(redis_cache.get(f"d1-1:{i}") is None for i in range(5))
    assert redis_cache.size == 0


def _budget() -> UnpackBudget:
    return UnpackBudget(max_members=10, max_bytes=1 << 20, max_ratio=100)


def test_archive_caps_and_links(tmp_path: Path) -> None:
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("evil")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(InvalidInput, match="link"):
        unpack(link, tmp_path / "out", _budget(), "link.zip")
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(11):
            zf.writestr(f"{i}.jpg", b"x")
    with pytest.raises(InvalidInput, match="more than 10"):
        unpack(many, tmp_path / "out2", _budget(), "many.zip")
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w") as zf:
        zf.writestr("big.jpg", os.urandom(2 << 20))
    with pytest.raises(InvalidInput, match="more than 1048576 bytes"):
        unpack(big, tmp_path / "out3", _budget(), "big.zip")
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(InvalidInput):
        unpack(tmp_path / "junk.zip", tmp_path / "out4", _budget(), "junk.zip")


def test_kinds_and_context_image_owners() -> None:
    assert kind_of("a/b.JPG") == "image" and kind_of("x.tar.gz") == "archive"
    assert kind_of("__MACOSX/a.jpg") == "ignored" and kind_of("v.webm") == "video"
    assert kind_of("a/related_images/img_1_png/c.jpg") == "related"
    assert related_owner("a/related_images/img_1_png/c.jpg") == "a/img_1.png"
    assert related_owner("related_images/x_jpeg/c.jpg") == "x.jpeg"
    assert related_owner("img.jpg") is None


def test_credentials_are_encrypted_and_hidden(tmp_path: Path) -> None:
    cipher = Cipher.from_settings(None, tmp_path / "secrets" / "cloud.key")
    assert stat.S_IMODE((tmp_path / "secrets" / "cloud.key").stat().st_mode) == 0o600
    token = cipher.encrypt({"secret_key": "s3cr3t"})
    assert "s3cr3t" not in token
    again = Cipher.from_settings(None, tmp_path / "secrets" / "cloud.key")
    assert again.decrypt(token) == {"secret_key": "s3cr3t"}
    access = CloudAccess(
        "AWS_S3_BUCKET", "b", "KEY_SECRET_KEY_PAIR", secrets={"secret_key": "s3cr3t"}
    )
    assert "s3cr3t" not in repr(access)
    other = Cipher.from_settings(None, tmp_path / "other.key")
    with pytest.raises(Exception, match="cannot be decrypted"):
        other.decrypt(token)


def test_decode_array_gives_pillows_pixels() -> None:
    """The model path's decoder (OpenCV for upright RGB or grey JPEG and PNG files, Pillow
    for the rest) gives exactly the pixels of :func:`decode_image`, rotation included."""
    import io

    import numpy as np
    from PIL import Image

    from cvat_ray.storage.media.render import decode_array, decode_image
    from tests.media_files import jpeg_with_orientation

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (48, 64, 3)).astype(np.uint8)
    pixels[10:30, 20:50] = (200, 30, 40)
    files: list[bytes] = []
    for mode in ("RGB", "L", "RGBA", "P", "CMYK"):
        image = Image.fromarray(pixels).convert(mode)
        for fmt, options in (
            ("JPEG", {"quality": 75, "subsampling": 2}),
            ("JPEG", {"quality": 95, "subsampling": 0, "progressive": True}),
            ("PNG", {}),
        ):
            if fmt == "JPEG" and mode in ("RGBA", "P"):
                continue
            if fmt == "PNG" and mode == "CMYK":
                continue
            buf = io.BytesIO()
            image.save(buf, fmt, **options)
            files.append(buf.getvalue())
    files += [jpeg_with_orientation(40, 20, o) for o in (1, 3, 6, 8)]
    for data in files:
        expected = np.asarray(decode_image(data))
        got = decode_array(data)
        assert got.dtype == np.uint8 and got.shape == expected.shape
        assert np.array_equal(got, expected)
