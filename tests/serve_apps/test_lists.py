"""List endpoints: pagination envelope, CVAT's JSON-logic filter, search, sort."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import Account


async def _tasks(api: httpx.AsyncClient, names: list[str]) -> list[dict]:
    out = []
    for i, name in enumerate(names):
        r = await api.post(
            "/api/tasks",
            json={"name": name, "labels": [{"name": "a"}], "subset": "train" if i % 2 else "val"},
        )
        out.append(r.json())
    return out


async def test_pagination_envelope(client_for, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    await _tasks(api, [f"task{i:02}" for i in range(25)])
    r = await api.get("/api/tasks")
    body = r.json()
    assert body["count"] == 25 and len(body["results"]) == 10
    assert body["previous"] is None and body["next"].startswith("http://testserver/api/tasks?")
    seen = []
    page = 1
    while True:
        body = (await api.get(f"/api/tasks?page={page}")).json()
        seen += [t["name"] for t in body["results"]]
        if not body["next"]:
            break
        page += 1
    assert page == 3 and len(seen) == 25 and len(set(seen)) == 25
    assert seen[0] == "task24"  # newest first, like CVAT
    r = await api.get("/api/tasks?page=3&page_size=10")
    assert r.json()["next"] is None and "page=2" in r.json()["previous"]
    assert (await api.get("/api/tasks?page_size=100")).json()["results"].__len__() == 25
    assert (await api.get("/api/tasks?page=4")).status_code == 404
    assert (await api.get("/api/tasks?page=0")).status_code == 404
    assert (await api.get("/api/tasks?page=x")).status_code == 404
    assert len((await api.get("/api/tasks?page_size=x")).json()["results"]) == 10


async def test_filter_search_sort(client_for, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    await _tasks(api, ["apple", "banana", "cherry", "apricot"])

    def f(expr: dict) -> str:
        return "/api/tasks?filter=" + json.dumps(expr)

    names = lambda r: [t["name"] for t in r.json()["results"]]  # noqa: E731
    assert names(await api.get(f({"==": [{"var": "name"}, "banana"]}))) == ["banana"]
    assert sorted(names(await api.get(f({"in": ["ap", {"var": "name"}]})))) == ["apple", "apricot"]
    assert sorted(names(await api.get(f({"in": [{"var": "name"}, ["apple", "cherry"]]})))) == [
        "apple",
        "cherry",
    ]
    assert names(
        await api.get(
            f(
                {
                    "and": [
                        {"==": [{"var": "subset"}, "train"]},
                        {"!": {"==": [{"var": "name"}, "banana"]}},
                    ]
                }
            )
        )
    ) == ["apricot"]
    assert sorted(
        names(
            await api.get(
                f({"or": [{"==": [{"var": "name"}, "apple"]}, {"==": [{"var": "name"}, "cherry"]}]})
            )
        )
    ) == ["apple", "cherry"]
    first = (await api.get("/api/tasks?sort=id")).json()["results"][0]["id"]
    assert names(await api.get(f({"<=": [first + 1, {"var": "id"}, first + 2]}))) == [
        "cherry",
        "banana",
    ]
    assert names(await api.get("/api/tasks?search=ERR")) == ["cherry"]
    assert names(await api.get("/api/tasks?sort=name")) == ["apple", "apricot", "banana", "cherry"]
    assert names(await api.get("/api/tasks?sort=-name")) == ["cherry", "banana", "apricot", "apple"]
    assert names(await api.get("/api/tasks?name=apple")) == ["apple"]
    assert names(await api.get("/api/tasks?owner=alice&subset=val&sort=name")) == [
        "apple",
        "cherry",
    ]


@pytest.mark.parametrize(
    "query",
    [
        "filter={bad",
        'filter={"==":[{"var":"nope"},1]}',
        'filter={"regex":[{"var":"name"},"a"]}',
        'filter={"==":[{"var":"id"},"abc"]}',
        'filter={"==":[{"var":"id"},99999999999999]}',
        'filter={"==":[1,2]}',
        "filter=[1]",
        "sort=nope",
        "project_id=abc",
        "project_id=99999999999999999",
        "name=%00",
    ],
)
async def test_bad_list_params_are_400(client_for, alice: Account, query: str) -> None:
    api: httpx.AsyncClient = client_for(alice)
    r = await api.get(f"/api/tasks?{query}")
    assert r.status_code == 400, r.text


async def test_org_params(client_for, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    await _tasks(api, ["a"])
    assert (await api.get("/api/tasks?org=")).json()["count"] == 1
    assert (await api.get("/api/tasks?org=nope")).status_code == 404
    assert (await api.get("/api/tasks", headers={"X-Organization": "nope"})).status_code == 404
    assert (await api.get("/api/tasks?org_id=1&org=x")).status_code == 400
    assert (await api.get("/api/tasks?org=a", headers={"X-Organization": "b"})).status_code == 400
    assert (await api.get("/api/tasks?org_id=x")).status_code == 400
