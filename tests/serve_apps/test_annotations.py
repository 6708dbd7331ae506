"""Annotations of jobs and tasks over the API: CVAT's semantics, validation, atomicity."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from cvat_ray.storage.db import Database
from tests.conftest import Account
from tests.factories import LABELS, make_task


def _attr(label: dict[str, Any], name: str) -> int:
    return next(a["id"] for a in label["attributes"] if a["name"] == name)


def sample(task: dict[str, Any], frame: int = 0) -> dict[str, Any]:
    """One of each kind: tag, rectangle, polygon, mask, skeleton, track, skeleton track."""
    cat = task["labels_by_name"]["cat"]
    dog = task["labels_by_name"]["dog"]
    person = task["labels_by_name"]["person"]
    head, hand = (s["id"] for s in person["sublabels"])
    return {
        "tags": [{"frame": frame, "label_id": cat["id"], "group": None}],
        "shapes": [
            {
                "type": "rectangle",
                "frame": frame,
                "label_id": dog["id"],
                "points": [1, 2, 30.5, 40],
                "source": "auto",
                "score": 0.25,
                "rotation": 15,
                "attributes": [
                    {"spec_id": _attr(dog, "color"), "value": "b"},
                    {"spec_id": _attr(dog, "age"), "value": "7"},
                    {"spec_id": _attr(dog, "good"), "value": "True"},
                    {"spec_id": _attr(dog, "note"), "value": 'quote " back\\slash\ttab'},
                ],
            },
            {
                "type": "polygon",
                "frame": frame,
                "label_id": cat["id"],
                "points": [0, 0, 5, 0, 5, 5],
            },
            {
                "type": "mask",
                "frame": frame,
                "label_id": cat["id"],
                "points": [2, 1, 1, 10, 20, 11, 21],
            },
            {
                "type": "skeleton",
                "frame": frame,
                "label_id": person["id"],
                "points": [],
                "elements": [
                    {"type": "points", "frame": frame, "label_id": head, "points": [1, 1]},
                    {
                        "type": "points",
                        "frame": frame,
                        "label_id": hand,
                        "points": [2, 2],
                        "outside": True,
                    },
                ],
            },
        ],
        "tracks": [
            {
                "frame": frame,
                "label_id": cat["id"],
                "shapes": [
                    {"type": "rectangle", "frame": frame, "points": [0, 0, 10, 10]},
                    {
                        "type": "rectangle",
                        "frame": frame + 4,
                        "points": [4, 4, 14, 14],
                        "outside": True,
                    },
                ],
            },
            {
                "frame": frame,
                "label_id": person["id"],
                "shapes": [{"type": "skeleton", "frame": frame, "points": []}],
                "elements": [
                    {
                        "frame": frame,
                        "label_id": head,
                        "shapes": [{"type": "points", "frame": frame, "points": [5, 5]}],
                    },
                    {
                        "frame": frame,
                        "label_id": hand,
                        "shapes": [{"type": "points", "frame": frame, "points": [6, 6]}],
                    },
                ],
            },
        ],
    }


def counts(data: dict[str, Any]) -> tuple[int, int, int]:
    return len(data["tags"]), len(data["shapes"]), len(data["tracks"])


async def test_job_put_get_roundtrip(client_for, db: Database, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db)
    job_id = task["job_ids"][0]
    before = (await api.get(f"/api/tasks/{task['id']}")).json()["updated_date"]
    r = await api.put(f"/api/jobs/{job_id}/annotations/", json=sample(task))
    assert r.status_code == 200, r.text
    written = r.json()
    assert all(isinstance(o["id"], int) for s in ("tags", "shapes", "tracks") for o in written[s])

    r = await api.get(f"/api/jobs/{job_id}/annotations/")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["version"] == 0 and data["intervals"] == []
    assert counts(data) == (1, 4, 2)
    assert data["tags"][0]["group"] == 0 and data["tags"][0]["source"] == "manual"
    rect = next(s for s in data["shapes"] if s["type"] == "rectangle")
    assert rect["points"] == [1.0, 2.0, 30.5, 40.0]
    assert rect["source"] == "auto" and rect["score"] == 0.25 and rect["rotation"] == 15
    values = sorted(a["value"] for a in rect["attributes"])
    assert values == ["7", "b", 'quote " back\\slash\ttab', "true"]
    skeleton = next(s for s in data["shapes"] if s["type"] == "skeleton")
    assert len(skeleton["elements"]) == 2 and skeleton["elements"][1]["outside"] is True
    assert {e["id"] for e in skeleton["elements"]} == {
        e["id"] for e in next(s for s in written["shapes"] if s["type"] == "skeleton")["elements"]
    }
    skeleton_track = next(t for t in data["tracks"] if t["elements"])
    assert [len(e["shapes"]) for e in skeleton_track["elements"]] == [1, 1]
    ids = {o["id"] for s in ("tags", "shapes", "tracks") for o in data[s]}
    assert ids == {o["id"] for s in ("tags", "shapes", "tracks") for o in written[s]}

    after = (await api.get(f"/api/tasks/{task['id']}")).json()["updated_date"]
    assert after > before
    job = (await api.get(f"/api/jobs/{job_id}")).json()
    assert job["updated_date"] > before

    # PUT replaces
    r = await api.put(
        f"/api/jobs/{job_id}/annotations", json={"shapes": sample(task)["shapes"][:1]}
    )
    assert r.status_code == 200
    assert counts((await api.get(f"/api/jobs/{job_id}/annotations")).json()) == (0, 1, 0)
    # DELETE clears
    r = await api.delete(f"/api/jobs/{job_id}/annotations/")
    assert r.status_code == 204
    assert counts((await api.get(f"/api/jobs/{job_id}/annotations")).json()) == (0, 0, 0)


async def test_patch_actions(client_for, db: Database, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db)
    url = f"/api/jobs/{task['job_ids'][0]}/annotations/"
    r = await api.patch(url + "?action=create", json=sample(task))
    assert r.status_code == 200, r.text
    created = r.json()
    rect = next(s for s in created["shapes"] if s["type"] == "rectangle")

    # update: with an id replaces that object, without one creates (CVAT compatibility)
    rect["points"] = [5, 5, 50, 50]
    new = {"type": "points", "frame": 1, "label_id": rect["label_id"], "points": [1, 2]}
    r = await api.patch(url + "?action=update", json={"shapes": [rect, new]})
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["shapes"][0]["id"] == rect["id"] and isinstance(updated["shapes"][1]["id"], int)
    data = (await api.get(url)).json()
    assert counts(data) == (1, 5, 2)
    assert next(s for s in data["shapes"] if s["id"] == rect["id"])["points"] == [5.0, 5, 50, 50]

    # update of a skeleton keeps its element ids
    skeleton = next(s for s in data["shapes"] if s["type"] == "skeleton")
    skeleton["elements"][0]["points"] = [9, 9]
    r = await api.patch(url + "?action=update", json={"shapes": [skeleton]})
    assert r.status_code == 200, r.text
    again = next(s for s in (await api.get(url)).json()["shapes"] if s["type"] == "skeleton")
    assert [e["id"] for e in again["elements"]] == [e["id"] for e in skeleton["elements"]]
    assert again["elements"][0]["points"] == [9.0, 9.0]

    # delete needs ids
    r = await api.patch(url + "?action=delete", json={"shapes": [new]})
    assert r.status_code == 400 and "shapes[0].id" in r.json()
    r = await api.patch(url + "?action=delete", json={"shapes": [rect], "tracks": data["tracks"]})
    assert r.status_code == 200 and r.json()["shapes"][0]["id"] == rect["id"]
    assert counts((await api.get(url)).json()) == (1, 4, 0)

    # create refuses ids; bad action
    r = await api.patch(url + "?action=create", json={"tags": data["tags"]})
    assert r.status_code == 400 and "tags[0].id" in r.json()
    r = await api.patch(url + "?action=replace", json={})
    assert r.status_code == 400 and "action" in r.json()
    r = await api.patch(url + "?action=create", content=b"")
    assert r.status_code == 200 and r.json()["shapes"] == []


BAD_SHAPES = [
    ({"type": "rectangle", "points": [1, 2, 3]}, "shapes[1].points", "rectangle needs 4 values"),
    ({"type": "polygon", "points": [1, 2, 3, 4]}, "shapes[1].points", "at least 6"),
    ({"type": "polyline", "points": [1, 2, 3, 4, 5]}, "shapes[1].points", "even"),
    ({"type": "cuboid", "points": [1] * 15}, "shapes[1].points", "16"),
    ({"type": "mask", "points": [1, 2, 0, 0, 1, 1]}, "shapes[1].points", "RLE"),
    ({"type": "mask", "points": [4, 2, 0, 1, 1]}, "shapes[1].points", "left <= right"),
    ({"type": "rectangle", "points": [1, 2, 3, 4], "rotation": 361}, "shapes[1].rotation", "360"),
    ({"type": "rectangle", "points": [1, 2, 3, 4], "score": 1.5}, "shapes[1].score", "1"),
    ({"type": "rectangle", "points": [1, 2, 3, 4], "frame": 99}, "shapes[1].frame", "outside"),
    (
        {"type": "rectangle", "points": [1, 2, 3, 4], "label_id": 999999},
        "shapes[1].label_id",
        "label",
    ),
    ({"type": "rectangle", "points": [1, 2, 3, 4], "source": "a b"}, "shapes[1].source", "letters"),
    ({"type": "rectangle", "points": [1, 2, 3, 4], "occluded": None}, "shapes[1].occluded", "bool"),
    ({"type": "skeleton", "points": []}, "shapes[1].label_id", "skeleton"),
    ({"type": "hexagon", "points": []}, "shapes[1].type", "hexagon"),
]


@pytest.mark.parametrize(("change", "field", "message"), BAD_SHAPES)
async def test_bad_shapes_are_refused_and_nothing_changes(
    client_for, db: Database, alice: Account, change: dict[str, Any], field: str, message: str
) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db)
    url = f"/api/jobs/{task['job_ids'][0]}/annotations"
    cat = task["labels_by_name"]["cat"]["id"]
    r = await api.put(url, json={"tags": [{"frame": 0, "label_id": cat}]})
    assert r.status_code == 200
    good = {"type": "rectangle", "frame": 0, "label_id": cat, "points": [1, 2, 3, 4]}
    bad = {**good, **change}
    for method in ("PUT", "PATCH"):
        r = await api.request(
            method,
            url + ("?action=create" if method == "PATCH" else ""),
            json={"shapes": [good, bad]},
        )
        assert r.status_code == 400, r.text
        assert field in r.json(), r.json()
        assert message in " ".join(r.json()[field]), r.json()
    assert counts((await api.get(url)).json()) == (1, 0, 0)


async def test_attribute_and_track_rules(client_for, db: Database, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db)
    url = f"/api/jobs/{task['job_ids'][0]}/annotations?action=create"
    dog = task["labels_by_name"]["dog"]
    cat = task["labels_by_name"]["cat"]
    person = task["labels_by_name"]["person"]
    rect = {"type": "rectangle", "frame": 0, "label_id": dog["id"], "points": [1, 2, 3, 4]}

    async def refused(payload: dict[str, Any], field: str) -> None:
        r = await api.patch(url, json=payload)
        assert r.status_code == 400, r.text
        assert field in r.json(), r.json()

    for spec, value in (
        ("age", "21"),
        ("age", "1.5"),
        ("age", "x"),
        ("color", "c"),
        ("good", "yes"),
    ):
        attrs = [{"spec_id": _attr(dog, spec), "value": value}]
        await refused({"shapes": [{**rect, "attributes": attrs}]}, "shapes[0].attributes[0].value")
    await refused(
        {"shapes": [{**rect, "attributes": [{"spec_id": _attr(dog, "age"), "value": "1"}] * 2}]},
        "shapes[0].attributes[1].spec_id",
    )
    await refused(
        {
            "shapes": [
                {
                    **rect,
                    "label_id": cat["id"],
                    "attributes": [{"spec_id": _attr(dog, "age"), "value": "1"}],
                }
            ]
        },
        "shapes[0].attributes[0].spec_id",
    )
    track = {
        "frame": 0,
        "label_id": dog["id"],
        "shapes": [
            {"type": "rectangle", "frame": 2, "points": [1, 2, 3, 4]},
            {"type": "rectangle", "frame": 1, "points": [1, 2, 3, 4]},
        ],
    }
    await refused({"tracks": [track]}, "tracks[0].shapes[1].frame")
    track["shapes"][1]["frame"] = 2
    await refused({"tracks": [track]}, "tracks[0].shapes[1].frame")
    track["shapes"][1] = {"type": "polygon", "frame": 3, "points": [1, 2, 3, 4, 5, 6]}
    await refused({"tracks": [track]}, "tracks[0].shapes[1].type")
    color = _attr(dog, "color")
    track["shapes"] = [
        {
            "type": "rectangle",
            "frame": 1,
            "points": [1, 2, 3, 4],
            "attributes": [{"spec_id": color, "value": "a"}],
        },
        {
            "type": "rectangle",
            "frame": 2,
            "points": [1, 2, 3, 4],
            "attributes": [{"spec_id": color, "value": "b"}],
        },
    ]
    await refused({"tracks": [track]}, "tracks[0].shapes[1].attributes[0].value")
    await refused({"tracks": [{**track, "shapes": []}]}, "tracks[0].shapes")
    head = person["sublabels"][0]["id"]
    skeleton = {
        "type": "skeleton", "frame": 0, "label_id": person["id"], "points": [],
        "elements": [{"type": "points", "frame": 0, "label_id": cat["id"], "points": [1, 1]}],
    }  # fmt: skip
    await refused({"shapes": [skeleton]}, "shapes[0].elements[0].label_id")
    skeleton["elements"] = [{"type": "points", "frame": 0, "label_id": head, "points": [1, 1]}] * 2
    await refused({"shapes": [skeleton]}, "shapes[0].elements[1].label_id")
    await refused({"shapes": [{**rect, "elements": skeleton["elements"]}]}, "shapes[0].elements")
    await refused({"tags": [{"frame": 0, "label_id": head}]}, "tags[0].label_id")
    await refused({"intervals": [{"start": 0, "stop": 1, "label_id": cat["id"]}]}, "intervals")
    r = await api.patch(url, content=b"{not json")
    assert r.status_code == 400


async def test_ids_of_another_job_are_refused(client_for, db: Database, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db, frames=10, segment_size=5)
    first, second = task["job_ids"]
    cat = task["labels_by_name"]["cat"]["id"]
    shape = {"type": "rectangle", "frame": 0, "label_id": cat, "points": [1, 2, 3, 4]}
    created = (
        await api.patch(f"/api/jobs/{first}/annotations?action=create", json={"shapes": [shape]})
    ).json()
    foreign = {**created["shapes"][0], "frame": 5}
    for action in ("update", "delete"):
        r = await api.patch(
            f"/api/jobs/{second}/annotations?action={action}", json={"shapes": [foreign]}
        )
        assert r.status_code == 400 and "shapes[0].id" in r.json(), r.text
    r = await api.patch(
        f"/api/jobs/{second}/annotations?action=delete",
        json={"shapes": [{**foreign, "id": 2_000_000}]},
    )
    assert r.status_code == 400
    assert counts((await api.get(f"/api/jobs/{first}/annotations")).json()) == (0, 1, 0)


async def test_task_view_splits_and_merges(client_for, db: Database, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db, frames=10, segment_size=5)
    assert len(task["job_ids"]) == 2
    cat = task["labels_by_name"]["cat"]["id"]
    payload = {
        "tags": [{"frame": 1, "label_id": cat}, {"frame": 7, "label_id": cat}],
        "shapes": [
            {"type": "rectangle", "frame": f, "label_id": cat, "points": [f, 0, 10, 10]}
            for f in (0, 4, 5, 9)
        ],
        "tracks": [
            {
                "frame": 2,
                "label_id": cat,
                "shapes": [
                    {"type": "rectangle", "frame": 2, "points": [0, 0, 10, 10]},
                    {"type": "rectangle", "frame": 8, "points": [6, 6, 16, 16]},
                ],
            }
        ],
    }
    r = await api.put(f"/api/tasks/{task['id']}/annotations/", json=payload)
    assert r.status_code == 200, r.text
    first, second = (j["id"] for j in task["jobs_by_start"])
    a = (await api.get(f"/api/jobs/{first}/annotations")).json()
    b = (await api.get(f"/api/jobs/{second}/annotations")).json()
    assert counts(a) == (1, 2, 1) and counts(b) == (1, 2, 1)
    # the track is sliced: job 1 ends with an interpolated keyframe on its last frame,
    # job 2 starts with one on its first frame
    assert [s["frame"] for s in a["tracks"][0]["shapes"]] == [2, 4]
    assert a["tracks"][0]["shapes"][1]["points"] == [2.0, 2.0, 12.0, 12.0]
    assert [s["frame"] for s in b["tracks"][0]["shapes"]] == [5, 8]
    assert b["tracks"][0]["shapes"][0]["points"] == [3.0, 3.0, 13.0, 13.0]

    whole = (await api.get(f"/api/tasks/{task['id']}/annotations/")).json()
    assert counts(whole) == (2, 4, 2)
    # without overlap, the first piece ends right after its job (CVAT's merge)
    first_piece = next(t for t in whole["tracks"] if t["frame"] == 2)
    assert first_piece["shapes"][-1]["frame"] == 5 and first_piece["shapes"][-1]["outside"]

    # task-level update and delete go to the job that holds the object
    moved = {**whole["shapes"][3], "points": [1, 1, 2, 2]}
    r = await api.patch(
        f"/api/tasks/{task['id']}/annotations?action=update", json={"shapes": [moved]}
    )
    assert r.status_code == 200, r.text
    r = await api.patch(
        f"/api/tasks/{task['id']}/annotations?action=delete", json={"tags": whole["tags"][:1]}
    )
    assert r.status_code == 200, r.text
    whole = (await api.get(f"/api/tasks/{task['id']}/annotations")).json()
    assert counts(whole) == (1, 4, 2)
    assert [1.0, 1, 2, 2] in [s["points"] for s in whole["shapes"]]
    # a frame outside every job is refused
    r = await api.patch(
        f"/api/tasks/{task['id']}/annotations?action=create",
        json={
            "shapes": [{"type": "rectangle", "frame": 10, "label_id": cat, "points": [1, 2, 3, 4]}]
        },
    )
    assert r.status_code == 400 and "shapes[0].frame" in r.json()
    r = await api.delete(f"/api/tasks/{task['id']}/annotations")
    assert r.status_code == 204
    assert counts((await api.get(f"/api/tasks/{task['id']}/annotations")).json()) == (0, 0, 0)


async def test_overlapping_jobs_are_merged(client_for, db: Database, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db, frames=10, segment_size=6, overlap=2)
    jobs = task["jobs_by_start"]
    assert [(j["start_frame"], j["stop_frame"]) for j in jobs] == [(0, 5), (4, 9)]
    cat = task["labels_by_name"]["cat"]["id"]
    payload = {
        "tags": [{"frame": 4, "label_id": cat}],
        "shapes": [{"type": "rectangle", "frame": 5, "label_id": cat, "points": [0, 0, 10, 10]}],
        "tracks": [
            {
                "frame": 1,
                "label_id": cat,
                "shapes": [
                    {"type": "rectangle", "frame": 1, "points": [0, 0, 10, 10]},
                    {"type": "rectangle", "frame": 8, "points": [7, 7, 17, 17]},
                ],
            }
        ],
    }
    r = await api.put(f"/api/tasks/{task['id']}/annotations", json=payload)
    assert r.status_code == 200, r.text
    for job in jobs:  # the shared frames are in both jobs
        assert counts((await api.get(f"/api/jobs/{job['id']}/annotations")).json()) == (1, 1, 1)
    whole = (await api.get(f"/api/tasks/{task['id']}/annotations")).json()
    assert counts(whole) == (1, 1, 1)
    frames = [s["frame"] for s in whole["tracks"][0]["shapes"]]
    assert frames[0] == 1 and frames[-1] == 8
    # a shape that differs on a shared frame is not a duplicate
    r = await api.patch(
        f"/api/jobs/{jobs[1]['id']}/annotations?action=create",
        json={
            "shapes": [
                {"type": "rectangle", "frame": 5, "label_id": cat, "points": [50, 50, 60, 60]}
            ]
        },
    )
    assert r.status_code == 200
    assert counts((await api.get(f"/api/tasks/{task['id']}/annotations")).json()) == (1, 2, 1)


async def test_permissions_and_format(
    client_for, db: Database, alice: Account, bob: Account
) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db)
    job_id = task["job_ids"][0]
    other: httpx.AsyncClient = client_for(bob)
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        for url in (f"/api/jobs/{job_id}/annotations", f"/api/tasks/{task['id']}/annotations"):
            r = await other.request(
                method, url + ("?action=create" if method == "PATCH" else ""), json={}
            )
            assert r.status_code == 403, (method, url, r.text)
    r = await api.get(f"/api/jobs/{job_id}/annotations?format=CVAT+for+images+1.1")
    assert r.status_code == 400 and "format" in r.json()
    r = await api.put(f"/api/tasks/{task['id']}/annotations?format=COCO+1.0", json={})
    assert r.status_code == 400 and "format" in r.json()
    r = await api.get("/api/jobs/999999/annotations")
    assert r.status_code == 404
    r = await client_for(Account(0, "nobody", "bad-token")).get(f"/api/jobs/{job_id}/annotations")
    assert r.status_code == 401


async def test_payload_cap(client_for, db: Database, alice: Account, app) -> None:  # type: ignore[no-untyped-def]
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db)
    app.state.settings.api.max_annotation_payload_mb = 1
    cat = task["labels_by_name"]["cat"]["id"]
    shapes = [{"type": "rectangle", "frame": 0, "label_id": cat, "points": [1, 2, 3, 4]}] * 20_000
    r = await api.put(f"/api/jobs/{task['job_ids'][0]}/annotations", json={"shapes": shapes})
    assert r.status_code == 413


async def test_label_and_task_deletion_remove_annotations(
    client_for, db: Database, alice: Account
) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db)
    url = f"/api/jobs/{task['job_ids'][0]}/annotations"
    assert (await api.put(url, json=sample(task))).status_code == 200
    person = task["labels_by_name"]["person"]
    r = await api.delete(f"/api/labels/{person['sublabels'][1]['id']}")
    assert r.status_code == 204
    data = (await api.get(url)).json()
    skeleton = next(s for s in data["shapes"] if s["type"] == "skeleton")
    assert len(skeleton["elements"]) == 1
    r = await api.delete(f"/api/labels/{person['id']}")
    assert r.status_code == 204
    assert counts((await api.get(url)).json()) == (1, 3, 1)
    # deleting an attribute spec removes its values
    dog = task["labels_by_name"]["dog"]
    note = _attr(dog, "note")
    r = await api.patch(
        f"/api/tasks/{task['id']}",
        json={"labels": [{"id": dog["id"], "attributes": [{"id": note, "deleted": True}]}]},
    )
    assert r.status_code == 200, r.text
    rect = next(s for s in (await api.get(url)).json()["shapes"] if s["type"] == "rectangle")
    assert note not in [a["spec_id"] for a in rect["attributes"]] and len(rect["attributes"]) == 3
    r = await api.delete(f"/api/tasks/{task['id']}")
    assert r.status_code == 204
    with db.engine.connect() as conn:
        for table in ("labeled_tags", "labeled_shapes", "labeled_tracks"):
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 0


async def test_moving_a_task_into_a_project_keeps_annotations(
    client_for, db: Database, alice: Account
) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db)
    url = f"/api/jobs/{task['job_ids'][0]}/annotations"
    assert (await api.put(url, json=sample(task))).status_code == 200
    r = await api.post("/api/projects", json={"name": "p", "labels": LABELS})
    project = r.json()
    r = await api.patch(f"/api/tasks/{task['id']}", json={"project_id": project["id"]})
    assert r.status_code == 200, r.text
    labels = (await api.get(f"/api/labels?project_id={project['id']}&org=")).json()["results"]
    label_ids = {lbl["id"] for lbl in labels} | {
        s["id"] for lbl in labels for s in lbl["sublabels"]
    }
    specs = {a["id"] for lbl in labels for a in lbl["attributes"]}
    data = (await api.get(url)).json()
    assert counts(data) == (1, 4, 2)
    for shape in data["shapes"]:
        assert shape["label_id"] in label_ids
        assert all(a["spec_id"] in specs for a in shape["attributes"])
        assert all(e["label_id"] in label_ids for e in shape["elements"])


async def test_concurrent_writers_lose_nothing(client_for, db: Database, alice: Account) -> None:
    """Two clients add shapes to one job at the same time; both sets are kept."""
    api: httpx.AsyncClient = client_for(alice)
    task = await make_task(api, db)
    url = f"/api/jobs/{task['job_ids'][0]}/annotations"
    cat = task["labels_by_name"]["cat"]["id"]
    first, second = client_for(alice), client_for(alice)

    async def add(client: httpx.AsyncClient, x: int) -> None:
        for _ in range(5):
            shapes = [
                {"type": "rectangle", "frame": 0, "label_id": cat, "points": [x, 0, 1, 1]}
            ] * 200
            r = await client.patch(url + "?action=create", json={"shapes": shapes})
            assert r.status_code == 200, r.text

    async def replace_and_update(client: httpx.AsyncClient) -> None:
        for _ in range(5):
            data = (await client.get(url)).json()
            mine = [s for s in data["shapes"] if s["points"][0] == 1][:10]
            for s in mine:
                s["occluded"] = True
            r = await client.patch(url + "?action=update", json={"shapes": mine})
            assert r.status_code == 200, r.text

    await asyncio.gather(add(first, 1), add(second, 2), replace_and_update(client_for(alice)))
    shapes = (await api.get(url)).json()["shapes"]
    assert sum(1 for s in shapes if s["points"][0] == 1) == 1000
    assert sum(1 for s in shapes if s["points"][0] == 2) == 1000
