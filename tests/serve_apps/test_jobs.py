"""Jobs: listing filters and CVAT's stage/state/status rules."""

from __future__ import annotations

import httpx

from cvat_ray.storage.db import Database
from tests.conftest import Account
from tests.factories import add_frames


async def _task_with_jobs(
    api: httpx.AsyncClient, db: Database, frames: int = 6, segment: int = 2
) -> dict:
    task = (
        await api.post(
            "/api/tasks", json={"name": "t", "labels": [{"name": "a"}], "segment_size": segment}
        )
    ).json()
    add_frames(db, task["id"], frames)
    return task


async def test_stage_state_and_status(client_for, db: Database, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await _task_with_jobs(api, db)
    jobs = (await api.get(f"/api/jobs?task_id={task['id']}&sort=id")).json()["results"]
    assert len(jobs) == 3
    assert {j["stage"] for j in jobs} == {"annotation"} and {j["state"] for j in jobs} == {"new"}
    j0 = jobs[0]["id"]
    r = await api.patch(f"/api/jobs/{j0}", json={"state": "in progress"})
    assert r.status_code == 200 and r.json()["state"] == "in progress"
    # a new stage without a state resets the state to "new"
    r = await api.patch(f"/api/jobs/{j0}", json={"stage": "validation"})
    assert (
        r.json()["stage"] == "validation"
        and r.json()["state"] == "new"
        and r.json()["status"] == "validation"
    )
    r = await api.patch(f"/api/jobs/{j0}", json={"stage": "acceptance", "state": "completed"})
    assert r.json()["status"] == "completed"
    task_now = (await api.get(f"/api/tasks/{task['id']}")).json()
    assert task_now["status"] == "annotation"
    assert task_now["jobs"]["completed"] == 1
    for j in jobs[1:]:
        await api.patch(f"/api/jobs/{j['id']}", json={"stage": "validation"})
    assert (await api.get(f"/api/tasks/{task['id']}")).json()["status"] == "validation"
    for j in jobs[1:]:
        await api.patch(f"/api/jobs/{j['id']}", json={"stage": "acceptance", "state": "completed"})
    done = (await api.get(f"/api/tasks/{task['id']}")).json()
    assert done["status"] == "completed" and done["jobs"]["completed"] == 3
    r = await api.patch(f"/api/jobs/{j0}", json={"stage": "unknown"})
    assert r.status_code == 400 and "stage" in r.json()
    r = await api.patch(f"/api/jobs/{j0}", json={"state": "finished"})
    assert r.status_code == 400


async def test_job_assignee_and_filters(
    client_for, db: Database, alice: Account, bob: Account
) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await _task_with_jobs(api, db)
    jobs = (await api.get(f"/api/jobs?task_id={task['id']}&sort=id")).json()["results"]
    r = await api.patch(f"/api/jobs/{jobs[1]['id']}", json={"assignee": bob.id})
    assert r.status_code == 200 and r.json()["assignee"]["username"] == "bob"
    assert r.json()["assignee_updated_date"] is not None
    r = await api.patch(f"/api/jobs/{jobs[1]['id']}", json={"assignee": 4242})
    assert r.status_code == 400 and "assignee" in r.json()
    r = await api.get("/api/jobs?assignee=bob")
    assert [j["id"] for j in r.json()["results"]] == [jobs[1]["id"]]
    # bob sees only his job; CVAT's tables give a job's assignee no rights on the task itself
    bob_api: httpx.AsyncClient = client_for(bob)
    r = await bob_api.get("/api/jobs")
    assert [j["id"] for j in r.json()["results"]] == [jobs[1]["id"]]
    assert (await bob_api.get(f"/api/jobs/{jobs[0]['id']}")).status_code == 403
    assert (await bob_api.get(f"/api/tasks/{task['id']}")).status_code == 403
    assert (await bob_api.get("/api/tasks")).json()["count"] == 0
    assert (await bob_api.get(f"/api/labels?job_id={jobs[1]['id']}")).status_code == 200
    # the assignee may work on the job (state) but not reassign it or change its stage
    assert (
        await bob_api.patch(f"/api/jobs/{jobs[1]['id']}", json={"state": "in progress"})
    ).status_code == 200
    assert (
        await bob_api.patch(f"/api/jobs/{jobs[1]['id']}", json={"assignee": None})
    ).status_code == 403
    assert (
        await bob_api.patch(f"/api/jobs/{jobs[1]['id']}", json={"stage": "validation"})
    ).status_code == 403
    assert (await bob_api.delete(f"/api/tasks/{task['id']}")).status_code == 403
    r = await api.get("/api/jobs?filter=" + '{"and":[{"==":[{"var":"state"},"in progress"]}]}')
    assert r.json()["count"] == 1
    r = await api.get("/api/jobs?stage=annotation&sort=-id")
    assert [j["id"] for j in r.json()["results"]] == sorted((j["id"] for j in jobs), reverse=True)
