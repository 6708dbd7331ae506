"""Task data in-process: the upload protocol, processing, chunks, frames, meta, previews.

Processing runs on the in-process launcher (threads); tests poll ``/api/requests/{id}``.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from PIL import Image

from cvat_ray.cluster.settings import Settings
from tests.conftest import IN_CI, Account
from tests.factories import DATA_LABELS, images, new_task, upload, wait
from tests.media_files import (
    image_bytes,
    jpeg_with_orientation,
    tar_of,
    write_video,
    zip_members,
    zip_of,
)


async def create_with(
    api: httpx.AsyncClient, files: dict[str, bytes], **params: object
) -> tuple[int, dict[str, object]]:
    task_id = await new_task(api)
    r = await upload(api, task_id, files, **params)
    assert r.status_code == 202, r.text
    return task_id, await wait(api, r.json()["rq_id"])


@pytest.fixture
def media_settings(settings: Settings, tmp_path: Path) -> Settings:
    share = tmp_path / "share"
    share.mkdir()
    settings.media.share_root = share
    return settings


async def test_images_end_to_end(client_for, alice: Account) -> None:
    api = client_for(alice)
    files = images(5)
    files["img_05.png"] = image_bytes(64, 48, fmt="PNG")
    files["img_06.bmp"] = image_bytes(64, 48, fmt="BMP")
    files["img_07.tiff"] = image_bytes(64, 48, fmt="TIFF")
    files["img_08.webp"] = image_bytes(64, 48, fmt="WEBP")
    task_id, rq = await create_with(api, files, chunk_size=4)
    assert rq["status"] == "finished", rq
    assert rq["progress"] == 1.0 and rq["operation"]["type"] == "create:task"  # type: ignore[index]
    task = (await api.get(f"/api/tasks/{task_id}")).json()
    assert task["size"] == 9 and task["data_chunk_size"] == 4
    assert task["data_original_chunk_type"] == "imageset" and task["mode"] == "annotation"
    assert task["updated_date"] > task["created_date"]
    meta = (await api.get(f"/api/tasks/{task_id}/data/meta")).json()
    assert [f["name"] for f in meta["frames"]] == sorted(files)
    assert meta["frames"][0]["width"] == 64 and meta["deleted_frames"] == []
    r = await api.get(f"/api/tasks/{task_id}/data/?type=chunk&number=1&quality=original")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    members = zip_members(r.content)
    assert members == [files[n] for n in sorted(files)[4:8]]
    r = await api.get(f"/api/tasks/{task_id}/data/?type=chunk&number=2&quality=compressed")
    (only,) = zip_members(r.content)
    assert Image.open(io.BytesIO(only)).format == "JPEG"
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=5&quality=original")
    assert r.content == files["img_05.png"] and r.headers["content-type"] == "image/png"
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=5&quality=compressed")
    assert Image.open(io.BytesIO(r.content)).format == "JPEG"
    r = await api.get(f"/api/tasks/{task_id}/preview")
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size[0] <= 256
    for bad in ("type=chunk&number=3", "type=frame&number=9", "type=frame", "type=nope&number=0"):
        r = await api.get(f"/api/tasks/{task_id}/data/?{bad}&quality=original")
        assert r.status_code == 400, (bad, r.text)
    # no more data once attached
    r = await api.post(f"/api/tasks/{task_id}/data/", headers={"Upload-Start": ""})
    assert r.status_code == 400


async def test_exif_orientation_and_sorting(client_for, alice: Account) -> None:
    api = client_for(alice)
    files = {
        "img10.jpg": jpeg_with_orientation(40, 20, 6),
        "img2.jpg": image_bytes(40, 20),
        "img1.jpg": image_bytes(40, 20),
    }
    task_id, rq = await create_with(api, files, sorting_method="natural")
    assert rq["status"] == "finished", rq
    meta = (await api.get(f"/api/tasks/{task_id}/data/meta")).json()
    assert [f["name"] for f in meta["frames"]] == ["img1.jpg", "img2.jpg", "img10.jpg"]
    assert (meta["frames"][2]["width"], meta["frames"][2]["height"]) == (20, 40)
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=2&quality=original")
    assert Image.open(io.BytesIO(r.content)).size == (20, 40)

    order = ["img2.jpg", "img10.jpg", "img1.jpg"]
    task_id, rq = await create_with(
        api, files, sorting_method="predefined", upload_file_order=order
    )
    meta = (await api.get(f"/api/tasks/{task_id}/data/meta")).json()
    assert [f["name"] for f in meta["frames"]] == order


async def test_frame_filter_and_jobs(client_for, alice: Account) -> None:
    api = client_for(alice)
    task_id = await new_task(api, segment_size=2)
    r = await upload(api, task_id, images(10), start_frame=1, stop_frame=8, frame_filter="step=3")
    rq = await wait(api, r.json()["rq_id"])
    assert rq["status"] == "finished", rq
    meta = (await api.get(f"/api/tasks/{task_id}/data/meta")).json()
    assert [f["name"] for f in meta["frames"]] == ["img_01.jpg", "img_04.jpg", "img_07.jpg"]
    assert (meta["start_frame"], meta["stop_frame"], meta["frame_filter"]) == (1, 7, "step=3")
    jobs = (await api.get(f"/api/jobs?task_id={task_id}")).json()["results"]
    assert sorted((j["start_frame"], j["stop_frame"]) for j in jobs) == [(0, 1), (2, 2)]
    last = max(jobs, key=lambda j: j["start_frame"])
    jmeta = (await api.get(f"/api/jobs/{last['id']}/data/meta")).json()
    assert [f["name"] for f in jmeta["frames"]] == ["img_07.jpg"] and jmeta["size"] == 1
    r = await api.get(f"/api/jobs/{last['id']}/data?type=chunk&index=0&quality=original")
    assert len(zip_members(r.content)) == 1
    r = await api.get(f"/api/jobs/{last['id']}/data?type=frame&number=0&quality=original")
    assert r.status_code == 400  # not the job's frame
    r = await api.get(f"/api/jobs/{last['id']}/data?type=frame&number=2&quality=original")
    assert r.status_code == 200
    r = await api.get(f"/api/jobs/{last['id']}/preview")
    assert r.status_code == 200


async def test_deleted_frames(client_for, alice: Account) -> None:
    api = client_for(alice)
    task_id, _ = await create_with(api, images(4), chunk_size=2)
    before = (await api.get(f"/api/tasks/{task_id}")).json()["updated_date"]
    r = await api.patch(f"/api/tasks/{task_id}/data/meta", json={"deleted_frames": [3, 1, 1]})
    assert r.status_code == 200 and r.json()["deleted_frames"] == [1, 3]
    assert (await api.get(f"/api/tasks/{task_id}")).json()["updated_date"] > before
    r = await api.patch(f"/api/tasks/{task_id}/data/meta", json={"deleted_frames": [4]})
    assert r.status_code == 400
    # chunks keep deleted frames: positions do not move
    r = await api.get(f"/api/tasks/{task_id}/data/?type=chunk&number=0&quality=original")
    assert len(zip_members(r.content)) == 2
    job = (await api.get(f"/api/jobs?task_id={task_id}")).json()["results"][0]
    r = await api.patch(f"/api/jobs/{job['id']}/data/meta", json={"deleted_frames": [0]})
    assert r.status_code == 200 and r.json()["deleted_frames"] == [0]


async def test_archives(client_for, alice: Account) -> None:
    api = client_for(alice)
    inner = images(3)
    task_id, rq = await create_with(
        api,
        {
            "pack.zip": zip_of({f"sub/{k}": v for k, v in inner.items()}),
            "more.tar.gz": tar_of({"z.png": image_bytes(fmt="PNG")}),
        },
    )
    assert rq["status"] == "finished", rq
    meta = (await api.get(f"/api/tasks/{task_id}/data/meta")).json()
    assert [f["name"] for f in meta["frames"]] == [f"sub/{k}" for k in sorted(inner)] + ["z.png"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"evil.zip": zip_of({"../../escape.jpg": image_bytes()})}, "unsafe path"),
        ({"abs.tar": tar_of({"/etc/x.jpg": image_bytes()}, mode="w")}, "unsafe path"),
        ({"broken.jpg": image_bytes()[:200]}, "broken.jpg: not a valid image"),
        ({"notes.txt": b"hello"}, "Unsupported file types: notes.txt"),
        ({"fake.mp4": b"not a video at all"}, "fake.mp4: not a readable video"),
        ({"a.jpg": image_bytes(), "v.mp4": b"x"}, "either one video or images"),
        ({"empty.zip": zip_of({})}, "No images or videos"),
        (
            {"bomb.zip": zip_of({"zeros.jpg": b"\0" * (24 << 20)}, zipfile.ZIP_DEFLATED)},
            "decompression bomb",
        ),
    ],
)
async def test_bad_input_fails_and_is_retryable(
    client_for, alice: Account, files: dict[str, bytes], message: str
) -> None:
    api = client_for(alice)
    task_id, rq = await create_with(api, files)
    assert rq["status"] == "failed", rq
    assert message in str(rq["message"]), rq["message"]
    task = (await api.get(f"/api/tasks/{task_id}")).json()
    assert task["size"] == 0 and task["data"] is None
    r = await api.get(f"/api/jobs?task_id={task_id}")
    assert r.json()["count"] == 0
    # the upload can be retried
    r = await upload(api, task_id, images(2))
    assert r.status_code == 202, r.text
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"


async def test_upload_errors(client_for, alice: Account, settings: Settings) -> None:
    api = client_for(alice)
    task_id = await new_task(api)
    url = f"/api/tasks/{task_id}/data/"
    r = await api.post(url, headers={"Upload-Finish": ""}, json={"image_quality": 70})
    assert r.status_code == 409  # no Upload-Start
    await api.post(url, headers={"Upload-Start": ""})
    r = await api.post(url, headers={"Upload-Finish": ""}, json={"image_quality": 70})
    assert r.status_code == 400 and "No files" in r.text
    r = await api.post(url, headers={"Upload-Finish": ""}, json={"image_quality": 0})
    assert r.status_code == 400 and "image_quality" in r.json()
    r = await api.post(url, headers={"Upload-Finish": ""}, json={"frame_filter": "every=2"})
    assert r.status_code == 400
    settings.media.max_upload_bytes = 1000
    r = await api.post(
        url,
        headers={"Upload-Multiple": ""},
        files={"client_files[0]": ("/x/big.jpg", b"\xff" * 5000)},
    )
    assert r.status_code == 400 and "larger than 1000 bytes" in r.text
    r = await api.post(
        url,
        headers={"Upload-Multiple": ""},
        files={
            "client_files[0]": ("/x/ok.jpg", b"\xff" * 10),
            "client_files[1]": ("/y/ok.jpg", b"\xff"),
        },
    )
    assert r.status_code == 400 and "twice" in r.text


async def test_tus_upload(client_for, alice: Account) -> None:
    api = client_for(alice)
    task_id = await new_task(api)
    url = f"/api/tasks/{task_id}/data/"
    data = image_bytes(300, 200)
    await api.post(url, headers={"Upload-Start": ""})
    name = base64.b64encode(b"big.jpg").decode()
    r = await api.post(
        url,
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": f"filename {name}",
        },
    )
    assert r.status_code == 201, r.text
    location, filename = r.headers["Location"], r.headers["Upload-Filename"]
    assert location.startswith("http://testserver/api/tasks/") and filename == "big.jpg"
    tus = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    r = await api.patch(location, headers={**tus, "Upload-Offset": "0"}, content=data[:100])
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "100"
    r = await api.patch(location, headers={**tus, "Upload-Offset": "0"}, content=data[:100])
    assert r.status_code == 409 and r.headers["Upload-Offset"] == "100"
    r = await api.head(location, headers={"Tus-Resumable": "1.0.0"})
    assert r.headers["Upload-Offset"] == "100" and r.headers["Upload-Length"] == str(len(data))
    r = await api.post(url, headers={"Upload-Finish": ""}, json={})
    assert r.status_code == 400  # not complete yet
    r = await api.patch(location, headers={**tus, "Upload-Offset": "100"}, content=data[100:])
    assert r.headers["Upload-Offset"] == str(len(data))
    r = await api.post(url, headers={"Upload-Finish": ""}, json={"image_quality": 50})
    rq = await wait(api, r.json()["rq_id"])
    assert rq["status"] == "finished", rq
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=0&quality=original")
    assert r.content == data
    r = await api.patch(
        f"/api/tasks/{task_id}/data/0123456789abcdef0123456789abcdef",
        headers={**tus, "Upload-Offset": "0"},
        content=b"x",
    )
    assert r.status_code == 400  # the task has data now


async def test_video(client_for, alice: Account, tmp_path: Path) -> None:
    api = client_for(alice)
    video = write_video(tmp_path / "clip.mp4", 30).read_bytes()
    task_id, rq = await create_with(
        api, {"clip.mp4": video}, chunk_size=10, start_frame=2, frame_filter="step=2"
    )
    assert rq["status"] == "finished", rq
    task = (await api.get(f"/api/tasks/{task_id}")).json()
    assert task["size"] == 14 and task["mode"] == "interpolation"
    assert task["data_original_chunk_type"] == "video"
    meta = (await api.get(f"/api/tasks/{task_id}/data/meta")).json()
    assert [f["name"] for f in meta["frames"]] == ["clip.mp4"]
    assert (meta["start_frame"], meta["stop_frame"]) == (2, 28)
    r = await api.get(f"/api/tasks/{task_id}/data/?type=chunk&number=1&quality=compressed")
    assert r.headers["content-type"] == "video/mp4"
    container: Any = av.open(io.BytesIO(r.content))
    with container:
        assert len(list(container.decode(video=0))) == 4
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=3&quality=original")
    frame = Image.open(io.BytesIO(r.content))
    assert frame.format == "PNG" and frame.size == (64, 48)
    # source frame 2 + 3*2 = 8 -> grey level 80
    assert abs(frame.convert("L").getpixel((32, 24)) - 80) < 8  # type: ignore[operator]
    jobs = (await api.get(f"/api/jobs?task_id={task_id}")).json()["results"]
    assert len(jobs) == 1


async def test_video_zip_chunks(client_for, alice: Account, tmp_path: Path) -> None:
    api = client_for(alice)
    video = write_video(tmp_path / "clip.webm", 12, fmt="webm", codec="libvpx").read_bytes()
    task_id, rq = await create_with(api, {"clip.webm": video}, use_zip_chunks=True, chunk_size=5)
    assert rq["status"] == "finished", rq
    r = await api.get(f"/api/tasks/{task_id}/data/?type=chunk&number=2&quality=compressed")
    assert len(zip_members(r.content)) == 2


async def test_context_images(client_for, alice: Account) -> None:
    api = client_for(alice)
    archive = zip_of(
        {
            "a.jpg": image_bytes(),
            "b.jpg": image_bytes(),
            "related_images/b_jpg/ctx1.png": image_bytes(fmt="PNG"),
            "related_images/b_jpg/ctx2.png": image_bytes(fmt="PNG"),
        }
    )
    task_id, rq = await create_with(api, {"set.zip": archive})
    assert rq["status"] == "finished", rq
    meta = (await api.get(f"/api/tasks/{task_id}/data/meta")).json()
    assert [(f["name"], f["related_files"]) for f in meta["frames"]] == [("a.jpg", 0), ("b.jpg", 2)]
    r = await api.get(f"/api/tasks/{task_id}/data/?type=context_image&number=1&quality=original")
    assert len(zip_members(r.content)) == 2
    r = await api.get(f"/api/tasks/{task_id}/data/?type=context_image&number=0&quality=original")
    assert r.status_code == 404


async def test_share(client_for, alice: Account, media_settings: Settings) -> None:
    api = client_for(alice)
    share = media_settings.media.share_root
    assert share is not None
    for name, data in images(3).items():
        (share / "set" / name).parent.mkdir(exist_ok=True)
        (share / "set" / name).write_bytes(data)
    (share / "set" / "skip.jpg").write_bytes(image_bytes())
    task_id = await new_task(api)
    r = await api.post(
        f"/api/tasks/{task_id}/data/",
        json={
            "server_files": ["set/"],
            "server_files_exclude": ["set/skip.jpg"],
            "image_quality": 70,
        },
    )
    assert r.status_code == 202, r.text
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    meta = (await api.get(f"/api/tasks/{task_id}/data/meta")).json()
    assert meta["storage"] == "share" and len(meta["frames"]) == 3
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=0&quality=original")
    assert r.content == (share / "set" / "img_00.jpg").read_bytes()
    task2 = await new_task(api)
    for escape in (["../secret.jpg"], ["/etc/passwd"], ["set/../../x.jpg"]):
        r = await api.post(f"/api/tasks/{task2}/data/", json={"server_files": escape})
        assert r.status_code == 400, (escape, r.text)
    r = await api.post(f"/api/tasks/{task2}/data/", json={"server_files": ["set/nope.jpg"]})
    assert r.status_code == 400


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/a.jpg")
            self.end_headers()
            return
        data = self.files.get(self.path.lstrip("/"))
        self.send_response(200 if data is not None else 404)
        self.end_headers()
        if data is not None:
            self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server() -> Iterator[str]:
    _Files.files = {"a.jpg": image_bytes(), "b.png": image_bytes(fmt="PNG")}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_remote_files(
    client_for, alice: Account, settings: Settings, file_server: str
) -> None:
    api = client_for(alice)
    task_id = await new_task(api)
    urls = [f"{file_server}/a.jpg", f"{file_server}/b.png"]
    r = await api.post(f"/api/tasks/{task_id}/data/", json={"remote_files": urls})
    assert r.status_code == 400 and "loopback" in r.text  # the SSRF guard
    for url in ("file:///etc/passwd", "http://169.254.169.254/latest/meta-data", "ftp://x/y.jpg"):
        r = await api.post(f"/api/tasks/{task_id}/data/", json={"remote_files": [url]})
        assert r.status_code == 400, url
    settings.media.remote_allowlist = "127.0.0.1/32"
    r = await api.post(
        f"/api/tasks/{task_id}/data/", json={"remote_files": [*urls, f"{file_server}/redirect"]}
    )
    assert r.status_code == 202, r.text
    rq = await wait(api, r.json()["rq_id"])
    assert rq["status"] == "finished", rq
    meta = (await api.get(f"/api/tasks/{task_id}/data/meta")).json()
    assert [f["name"] for f in meta["frames"]] == ["a.jpg", "a_1.jpg", "b.png"]
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=2&quality=original")
    assert r.content == _Files.files["b.png"]
    task2 = await new_task(api)
    r = await api.post(
        f"/api/tasks/{task2}/data/", json={"remote_files": [f"{file_server}/missing.jpg"]}
    )
    rq = await wait(api, r.json()["rq_id"])
    assert rq["status"] == "failed" and "404" in str(rq["message"])


async def test_permissions(client_for, alice: Account, bob: Account) -> None:
    api, other = client_for(alice), client_for(bob)
    task_id, rq = await create_with(api, images(1))
    for path in (
        f"/api/tasks/{task_id}/data/?type=frame&number=0&quality=original",
        f"/api/tasks/{task_id}/data/meta",
        f"/api/tasks/{task_id}/preview",
        f"/api/requests/{rq['id']}",
    ):
        assert (await other.get(path)).status_code == 403, path
    task2 = await new_task(api)
    r = await other.post(f"/api/tasks/{task2}/data/", headers={"Upload-Start": ""})
    assert r.status_code == 403
    r = await other.patch(f"/api/tasks/{task_id}/data/meta", json={"deleted_frames": [0]})
    assert r.status_code == 403


async def test_project_preview(client_for, alice: Account) -> None:
    api = client_for(alice)
    r = await api.post("/api/projects", json={"name": "p", "labels": DATA_LABELS})
    project = r.json()["id"]
    assert (await api.get(f"/api/projects/{project}/preview")).status_code == 404
    r = await api.post("/api/tasks", json={"name": "t", "project_id": project})
    task_id = r.json()["id"]
    r = await upload(api, task_id, images(2))
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    r = await api.get(f"/api/projects/{project}/preview")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


async def test_chunks_are_built_once_and_cached(
    app, client_for, alice: Account, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import cvat_ray.serve_apps.media as media_module

    api = client_for(alice)
    task_id, _ = await create_with(api, images(3))
    calls: list[str] = []
    real = media_module.write_chunk  # type: ignore[attr-defined]

    def counting(plan, out):  # type: ignore[no-untyped-def]
        calls.append(plan.key)
        return real(plan, out)

    monkeypatch.setattr(media_module, "write_chunk", counting)
    url = f"/api/tasks/{task_id}/data/?type=chunk&number=0&quality=compressed"
    first, second = await asyncio.gather(api.get(url), api.get(url))
    third = await api.get(url)
    assert first.content == second.content == third.content
    assert len(calls) == 1
    assert app.state.media.cache.size > 0


@pytest.fixture
def redis_backend(settings: Settings) -> Iterator[Settings]:
    import uuid

    import redis

    try:
        redis.Redis(socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis is required in CI: {exc}")
        pytest.skip(f"Redis not available: {exc}")
    settings.cache.backend = "redis"
    settings.cache.redis_prefix = f"cvat-ray-test-{uuid.uuid4().hex[:8]}:"
    yield settings


async def test_redis_cache_backend(
    redis_backend: Settings, app, client_for, alice: Account
) -> None:  # type: ignore[no-untyped-def]
    from cvat_ray.storage.media.cache import RedisCache

    api = client_for(alice)
    task_id, _ = await create_with(api, images(2))
    url = f"/api/tasks/{task_id}/data/?type=chunk&number=0&quality=original"
    first = await api.get(url)
    cache = app.state.media.cache
    assert isinstance(cache, RedisCache) and cache.size > 0
    second = await api.get(url)
    assert first.content == second.content and len(zip_members(second.content)) == 2
    cache.clear()


async def test_remote_file_names_are_resolved_in_the_background(client_for, alice: Account) -> None:
    """Host names in remote_files are resolved by the background request, not on the API's
    database threads while the task's row is locked; what needs no DNS is refused at once."""
    api = client_for(alice)
    task_id = await new_task(api)
    r = await api.post(
        f"/api/tasks/{task_id}/data/", json={"remote_files": ["http://files.invalid/a.jpg"]}
    )
    assert r.status_code == 202, r.text
    rq = await wait(api, r.json()["rq_id"])
    assert rq["status"] == "failed" and "files.invalid cannot be resolved" in str(rq["message"])
    task_id = await new_task(api)
    for url in ("http://localhost:1/a.jpg", "http://[::1]/a.jpg", "http://10.0.0.1/a.jpg"):
        r = await api.post(f"/api/tasks/{task_id}/data/", json={"remote_files": [url]})
        assert r.status_code == 400 and "remote_files" in r.json(), (url, r.text)
