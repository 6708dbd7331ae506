"""Who may do what with cloud storages (CVAT's cloudstorages table), in the personal
workspace and in an organization. Storage rows are made directly: no emulator needed."""

from __future__ import annotations

import pytest

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import CloudStorage, Membership, Organization, utcnow
from tests.conftest import Account, make_account

ROLES = ("owner", "maintainer", "supervisor", "worker")


@pytest.fixture
def org_world(db: Database, settings: Settings) -> tuple[dict[str, Account], int, int]:
    """An organization with one member per role; a storage of the "worker" member in it."""
    settings.media.remote_allowlist = "127.0.0.1/32"
    people = {role: make_account(db, f"cs_{role}", ("user",)) for role in ROLES}
    with db.session() as session:
        org = Organization(slug="acme", name="acme", owner_id=people["owner"].id)
        session.add(org)
        session.flush()
        for role, account in people.items():
            session.add(
                Membership(
                    user_id=account.id,
                    organization_id=org.id,
                    role=role,
                    is_active=True,
                    joined_date=utcnow(),
                )
            )
        storage = CloudStorage(
            provider_type="AWS_S3_BUCKET",
            resource="b",
            display_name="worker's",
            credentials_type="ANONYMOUS_ACCESS",
            credentials="",
            specific_attributes="",
            owner_id=people["worker"].id,
            organization_id=org.id,
            manifests=[],
        )
        session.add(storage)
        session.flush()
        return people, org.id, storage.id


# An unreachable endpoint: an allowed create gets past the policy and fails with a 400.
UNREACHABLE = {
    "provider_type": "AWS_S3_BUCKET",
    "resource": "b",
    "display_name": "x",
    "credentials_type": "ANONYMOUS_ACCESS",
    "specific_attributes": "endpoint_url=http://127.0.0.1:9",
}


@pytest.mark.parametrize(
    ("role", "create", "view", "update"),
    [
        ("owner", 400, 200, 200),
        ("maintainer", 400, 200, 200),
        ("supervisor", 403, 200, 403),
        ("worker", 403, 200, 200),  # the storage's own creator
    ],
)
async def test_organization_roles(
    client_for, org_world, role: str, create: int, view: int, update: int
) -> None:
    people, _, storage_id = org_world
    api = client_for(people[role])
    org = {"X-Organization": "acme"}
    r = await api.post("/api/cloudstorages", json=UNREACHABLE, headers=org)
    assert r.status_code == create, r.text
    assert (await api.get(f"/api/cloudstorages/{storage_id}", headers=org)).status_code == view
    r = await api.patch(f"/api/cloudstorages/{storage_id}", json={"description": "d"}, headers=org)
    assert r.status_code == update, r.text
    listed = (await api.get("/api/cloudstorages", headers=org)).json()
    assert [s["id"] for s in listed["results"]] == [storage_id]


async def test_personal_workspace(client_for, org_world, alice: Account, admin: Account) -> None:
    people, _, storage_id = org_world
    api = client_for(alice)
    r = await api.post("/api/cloudstorages", json=UNREACHABLE, headers={"X-Organization": ""})
    assert r.status_code == 400  # users may add their own
    assert (await api.get(f"/api/cloudstorages/{storage_id}")).status_code == 403
    assert (await api.get("/api/cloudstorages")).json()["count"] == 0
    assert (await client_for(admin).get(f"/api/cloudstorages/{storage_id}")).status_code == 200
    assert (await client_for(admin).get("/api/cloudstorages")).json()["count"] == 1
    r = await client_for(people["supervisor"]).delete(
        f"/api/cloudstorages/{storage_id}", headers={"X-Organization": "acme"}
    )
    assert r.status_code == 403
    r = await client_for(people["maintainer"]).delete(
        f"/api/cloudstorages/{storage_id}", headers={"X-Organization": "acme"}
    )
    assert r.status_code == 204
