"""Limits of the data endpoints (docs/security.md, "Media limits"): chunk sizes and pixels
per chunk, decode work per read, chunks too large to cache, job chunks by task chunk number,
and uploads kept while they are alive."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import httpx
import pytest

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import Task
from cvat_ray.storage.services import requests as request_service
from cvat_ray.storage.services.data_processing import collect_garbage
from cvat_ray.storage.services.data_upload import CREATE_TASK, upload_area
from cvat_ray.storage.services.task_data import FrameInfo, attach_data
from tests.conftest import Account
from tests.factories import images, new_task, upload, wait
from tests.media_files import write_video, zip_members

DAY = 24 * 3600


async def create_with(
    api: httpx.AsyncClient, files: dict[str, bytes], **params: object
) -> tuple[int, dict[str, object]]:
    task_id = await new_task(api)
    r = await upload(api, task_id, files, **params)
    assert r.status_code == 202, r.text
    return task_id, await wait(api, r.json()["rq_id"])


# ---------------------------------------------------------------------------------- chunk sizes


async def test_chunk_size_over_the_cap_is_refused_and_changes_nothing(
    client_for, alice: Account, settings: Settings
) -> None:
    api = client_for(alice)
    task_id = await new_task(api)
    r = await upload(api, task_id, images(3), chunk_size=settings.media.max_chunk_size + 1)
    assert r.status_code == 400, r.text
    assert r.json() == {
        "chunk_size": [
            f"Ensure this value is less than or equal to {settings.media.max_chunk_size} "
            "(the most frames per chunk on this server)."
        ]
    }
    # the files are still there: finishing again with a good chunk size works
    r = await api.post(
        f"/api/tasks/{task_id}/data/", headers={"Upload-Finish": ""}, json={"chunk_size": 2}
    )
    assert r.status_code == 202, r.text
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    assert (await api.get(f"/api/tasks/{task_id}")).json()["data_chunk_size"] == 2


async def test_chunk_size_is_lowered_to_the_pixel_cap(
    client_for, alice: Account, settings: Settings
) -> None:
    settings.media.max_chunk_pixels = 3 * 64 * 48
    api = client_for(alice)
    task_id, rq = await create_with(api, images(7), chunk_size=5)
    assert rq["status"] == "finished", rq
    assert "chunk_size was lowered from 5 to 3" in str(rq["message"])
    assert (await api.get(f"/api/tasks/{task_id}")).json()["data_chunk_size"] == 3
    r = await api.get(f"/api/tasks/{task_id}/data/?type=chunk&number=2&quality=original")
    assert r.status_code == 200 and len(zip_members(r.content)) == 1
    # CVAT's automatic size (72 frames of this size) is lowered the same way
    task_id, rq = await create_with(api, images(7))
    assert (await api.get(f"/api/tasks/{task_id}")).json()["data_chunk_size"] == 3


async def test_chunks_over_the_limits_are_refused_frames_are_not(
    client_for, alice: Account, settings: Settings, db: Database
) -> None:
    """A task made under looser limits (or restored from elsewhere): its chunks are refused
    with a clear message, its frames are still served one by one."""
    api = client_for(alice)
    task_id, rq = await create_with(api, images(6), chunk_size=5)
    assert rq["status"] == "finished", rq
    url = f"/api/tasks/{task_id}/data/?type=chunk&number=0&quality=original"
    assert (await api.get(url)).status_code == 200
    settings.media.max_chunk_size = 4
    r = await api.get(url.replace("number=0", "number=1"))  # one frame: fine
    assert r.status_code == 200 and len(zip_members(r.content)) == 1
    r = await api.get(url)
    assert r.status_code == 400
    assert "holds 5 frames" in r.json()["number"][0] and "type=frame" in r.json()["number"][0]
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=4&quality=original")
    assert r.status_code == 200
    settings.media.max_chunk_size = 1000
    settings.media.max_chunk_pixels = 4 * 64 * 48
    assert (await api.get(url)).status_code == 400
    # tasks whose data was attached without limits (a restore) meet the same check
    with db.session() as session:
        task = session.get(Task, await new_task(api))
        assert task is not None
        attach_data(session, task, [FrameInfo(f"{i}.jpg", 64, 48) for i in range(8)], chunk_size=8)
        other = task.id
    r = await api.get(f"/api/tasks/{other}/data/?type=chunk&number=0&quality=original")
    assert r.status_code == 400 and "holds 8 frames" in r.text


# ---------------------------------------------------------------------------------- video


async def test_videos_with_keyframes_too_far_apart_are_refused(
    client_for, alice: Account, settings: Settings, tmp_path: Path
) -> None:
    settings.media.max_keyframe_interval = 20
    api = client_for(alice)
    clip = write_video(tmp_path / "one-key.mp4", 60, gop=1000).read_bytes()
    task_id, rq = await create_with(api, {"one-key.mp4": clip}, chunk_size=10)
    assert rq["status"] == "failed"
    assert "decodes 60 frames from its keyframe" in str(rq["message"])
    assert "Re-encode the video" in str(rq["message"])
    assert (await api.get(f"/api/tasks/{task_id}")).json()["size"] == 0
    # keyframes every 10 frames are fine
    clip = write_video(tmp_path / "gop10.mp4", 60, gop=10).read_bytes()
    task_id, rq = await create_with(api, {"gop10.mp4": clip}, chunk_size=10)
    assert rq["status"] == "finished", rq


async def test_reads_of_a_video_decode_a_bounded_number_of_frames(
    client_for, alice: Account, settings: Settings, tmp_path: Path
) -> None:
    """A single-keyframe video accepted under a looser bound: a read that would decode the
    video from its start past the bound is refused, not carried out."""
    api = client_for(alice)
    clip = write_video(tmp_path / "one-key.mp4", 60, gop=1000).read_bytes()
    task_id, rq = await create_with(api, {"one-key.mp4": clip}, chunk_size=10)
    assert rq["status"] == "finished", rq
    settings.media.max_keyframe_interval = 20
    url = f"/api/tasks/{task_id}/data/?type=chunk&number={{}}&quality=compressed"
    for number in (0, 1):  # frames 0-19: at most 20 decoded each
        r = await api.get(url.format(number))
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    r = await api.get(url.format(5))
    assert r.status_code == 400 and "decodes more than 20 frames" in r.text
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=50&quality=original")
    assert r.status_code == 400


# ---------------------------------------------------------------------------------- spooling


@pytest.fixture
def small_cache_items(settings: Settings) -> Settings:
    settings.cache.max_item_bytes = 2000
    return settings


async def test_chunks_larger_than_a_cache_item_stream_from_a_file(
    small_cache_items: Settings, app, client_for, alice: Account, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import cvat_ray.serve_apps.media as media_module

    api = client_for(alice)
    files = images(4)
    task_id, _ = await create_with(api, files, chunk_size=4)
    builds: list[str] = []
    real = media_module.write_chunk  # type: ignore[attr-defined]

    def counting(plan, out):  # type: ignore[no-untyped-def]
        builds.append(plan.key)
        return real(plan, out)

    monkeypatch.setattr(media_module, "write_chunk", counting)
    url = f"/api/tasks/{task_id}/data/?type=chunk&number=0&quality=original"
    first = await api.get(url)
    assert first.status_code == 200 and first.headers["content-type"] == "application/zip"
    assert int(first.headers["content-length"]) == len(first.content) > 2000
    assert zip_members(first.content) == [files[n] for n in sorted(files)]
    assert app.state.media.cache.size == 0  # too large to keep
    second = await api.get(url)
    assert second.content == first.content and len(builds) == 2
    # small items are still cached
    small = await api.get(url.replace("type=chunk", "type=frame"))
    assert small.status_code == 200 and app.state.media.cache.size == len(small.content)


# ---------------------------------------------------------------------------------- job chunks


async def test_job_chunks_by_number_hold_only_the_jobs_frames(client_for, alice: Account) -> None:
    api = client_for(alice)
    task_id = await new_task(api, segment_size=3)
    files = images(10)
    r = await upload(api, task_id, files, chunk_size=4)
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    jobs = (await api.get(f"/api/jobs?task_id={task_id}")).json()["results"]
    job = next(j for j in jobs if j["start_frame"] == 3)  # frames 3-5
    names = sorted(files)
    url = f"/api/jobs/{job['id']}/data?type=chunk&quality=original&number="
    r = await api.get(url + "0")  # task chunk 0 is frames 0-3: only frame 3 is the job's
    assert r.status_code == 200 and zip_members(r.content) == [files[names[3]]]
    r = await api.get(url + "1")  # task chunk 1 is frames 4-7: frames 4 and 5
    assert zip_members(r.content) == [files[names[4]], files[names[5]]]
    r = await api.get(url + "2")
    assert r.status_code == 400
    assert r.json() == {"number": ["The chunk number must be between 0 and 1 for this job."]}
    # the task's chunk 0 is still whole, and the job's own chunks are unchanged
    r = await api.get(f"/api/tasks/{task_id}/data/?type=chunk&number=0&quality=original")
    assert len(zip_members(r.content)) == 4
    r = await api.get(url.replace("number=", "index=") + "0")
    assert zip_members(r.content) == [files[n] for n in names[3:6]]


# ---------------------------------------------------------------------------------- uploads


def _age(folder: Path, seconds: float) -> None:
    then = time.time() - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (then, then))


async def _tus_start(api: httpx.AsyncClient, task_id: int, data: bytes) -> str:
    url = f"/api/tasks/{task_id}/data/"
    assert (await api.post(url, headers={"Upload-Start": ""})).status_code == 202
    r = await api.post(
        url,
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": "filename " + base64.b64encode(b"slow.jpg").decode(),
        },
    )
    assert r.status_code == 201, r.text
    return str(r.headers["Location"])


TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


async def test_a_resumable_upload_that_spans_days_is_kept(
    client_for, alice: Account, settings: Settings, db: Database
) -> None:
    api = client_for(alice)
    task_id = await new_task(api)
    data = images(1)["img_00.jpg"]
    location = await _tus_start(api, task_id, data)
    r = await api.patch(location, headers={**TUS, "Upload-Offset": "0"}, content=data[:100])
    assert r.status_code == 204
    area = upload_area(settings, task_id)
    _age(area.dir, 3 * DAY)  # Upload-Start and the first PATCH were three days ago ...
    r = await api.head(location, headers={"Tus-Resumable": "1.0.0"})  # ... the client resumes
    r = await api.patch(location, headers={**TUS, "Upload-Offset": "100"}, content=data[100:])
    assert r.status_code == 204
    collect_garbage(db, settings)
    assert area.started
    r = await api.post(f"/api/tasks/{task_id}/data/", headers={"Upload-Finish": ""}, json={})
    assert r.status_code == 202, r.text
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=0&quality=original")
    assert r.content == data


async def test_idle_uploads_are_collected_unless_a_request_needs_them(
    client_for, alice: Account, settings: Settings, db: Database
) -> None:
    api = client_for(alice)
    idle, queued, fresh = [await new_task(api) for _ in range(3)]
    for task_id in (idle, queued, fresh):
        url = f"/api/tasks/{task_id}/data/"
        await api.post(url, headers={"Upload-Start": ""})
        parts = {"client_files[0]": ("a.jpg", images(1)["img_00.jpg"], "image/jpeg")}
        assert (await api.post(url, headers={"Upload-Multiple": ""}, files=parts)).is_success
    with db.session() as session:  # Upload-Finish queued a request that no runner took yet
        task = session.get(Task, queued)
        assert task is not None
        request_service.add_request(
            session,
            CREATE_TASK,
            "task",
            owner_id=None,
            organization_id=None,
            task_id=queued,
            params={"source": "local", "data": {}},
        )
    for task_id in (idle, queued):
        _age(upload_area(settings, task_id).dir, DAY + 60)
    _age(upload_area(settings, fresh).dir, DAY - 600)
    assert collect_garbage(db, settings) == 1
    assert not upload_area(settings, idle).started
    assert upload_area(settings, queued).names() == ["a.jpg"]
    assert upload_area(settings, fresh).names() == ["a.jpg"]
    r = await api.post(f"/api/tasks/{idle}/data/", headers={"Upload-Finish": ""}, json={})
    assert r.status_code == 409 and "Upload-Start" in r.text
