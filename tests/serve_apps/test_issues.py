"""Issues and comments: CRUD, the job's issue count, who may do what."""

from __future__ import annotations

import httpx

from cvat_ray.storage.db import Database
from tests.conftest import Account
from tests.factories import make_task


async def test_issue_and_comment_lifecycle(
    client_for, db: Database, alice: Account, bob: Account
) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db, frames=10, segment_size=5)
    job_id = task["job_ids"][0]
    r = await api.post(
        "/api/issues",
        json={"frame": 2, "position": [1, 2, 3, 4], "job": job_id, "message": "fix this"},
    )
    assert r.status_code == 201, r.text
    issue = r.json()
    assert issue["job"] == job_id and issue["owner"]["username"] == "alice"
    assert issue["resolved"] is False and issue["comments"]["count"] == 1
    assert issue["comments"]["url"].endswith(f"/api/comments?issue_id={issue['id']}")

    job = (await api.get(f"/api/jobs/{job_id}")).json()
    assert job["issues"]["count"] == 1

    r = await api.post("/api/comments", json={"issue": issue["id"], "message": "done?"})
    assert r.status_code == 201, r.text
    comment = r.json()
    assert comment["issue"] == issue["id"] and comment["owner"]["username"] == "alice"
    r = await api.get(f"/api/comments?issue_id={issue['id']}")
    assert r.json()["count"] == 2
    r = await api.patch(f"/api/comments/{comment['id']}", json={"message": "done."})
    assert r.status_code == 200 and r.json()["message"] == "done."

    r = await api.patch(f"/api/issues/{issue['id']}", json={"resolved": True, "assignee": bob.id})
    assert r.status_code == 200, r.text
    assert r.json()["resolved"] is True and r.json()["assignee"]["id"] == bob.id
    r = await api.get(f"/api/issues?job_id={job_id}&resolved=true")
    assert r.json()["count"] == 1
    r = await api.get(f"/api/issues?task_id={task['id']}")
    assert r.json()["count"] == 1

    # bob, the issue's assignee, sees it, may comment and update, may not delete it
    other: httpx.AsyncClient = client_for(bob)
    assert (await other.get(f"/api/issues/{issue['id']}")).status_code == 200
    assert (await other.get("/api/issues")).json()["count"] == 1
    r = await other.post("/api/comments", json={"issue": issue["id"], "message": "on it"})
    assert r.status_code == 201, r.text
    assert (
        await other.patch(f"/api/issues/{issue['id']}", json={"resolved": False})
    ).status_code == 200
    assert (await other.delete(f"/api/issues/{issue['id']}")).status_code == 403
    # and he cannot open issues on the job (he does not work on it)
    r = await other.post(
        "/api/issues", json={"frame": 2, "position": [1, 2], "job": job_id, "message": "x"}
    )
    assert r.status_code == 403

    r = await api.delete(f"/api/comments/{comment['id']}")
    assert r.status_code == 204
    r = await api.delete(f"/api/issues/{issue['id']}")
    assert r.status_code == 204
    assert (await api.get(f"/api/comments?issue_id={issue['id']}")).json()["count"] == 0
    assert (await api.get(f"/api/jobs/{job_id}")).json()["issues"]["count"] == 0


async def test_issue_validation(client_for, db: Database, alice: Account, bob: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db, frames=10, segment_size=5)
    job_id = task["job_ids"][0]
    base = {"frame": 2, "position": [1, 2, 3, 4], "job": job_id, "message": "m"}
    for change, field in (
        ({"frame": 7}, "frame"),
        ({"frame": -1}, "frame"),
        ({"message": ""}, "message"),
        ({"job": 999999}, "job"),
        ({"position": []}, "position"),
    ):
        r = await api.post("/api/issues", json={**base, **change})
        assert r.status_code == 400 and field in r.json(), (change, r.text)
    assert (
        await api.post("/api/comments", json={"issue": 999999, "message": "m"})
    ).status_code == 400
    assert (await api.get("/api/issues/999999")).status_code == 404
    assert (await client_for(bob).get("/api/issues")).json()["count"] == 0
