"""cvat-sdk 2.80's webhooks API against our server: create, list, events, ping, deliveries,
redelivery, update, delete, and a real delivery to a loopback receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cvat_sdk import Client, Config
from cvat_sdk.api_client import models

from tests.compat.conftest import LiveServer
from tests.webhook_receiver import Receiver, receiver

pytestmark = pytest.mark.compat


@pytest.fixture
def sink() -> Iterator[Receiver]:
    yield from receiver()


def test_webhooks_api(live_server: LiveServer, tmp_path: Path, sink: Receiver) -> None:
    client = Client(live_server.url, config=Config(cache_dir=tmp_path / "cache"))
    client.login((live_server.user.username, live_server.password))
    with client:
        api = client.api_client
        slug = f"sdk{int(time.time() * 1000) % 100000}"
        api.organizations_api.create(models.OrganizationWriteRequest(slug=slug))
        client.organization_slug = slug
        events, _ = api.webhooks_api.retrieve_events(type="organization")
        keys = {e.key for e in events.events}
        assert "update:task" in keys and "create:user" not in keys
        hook, _ = api.webhooks_api.create(
            models.WebhookWriteRequest(
                target_url=sink.url,
                type=models.WebhookType("organization"),
                events=[models.EventsEnum("create:project"), models.EventsEnum("update:project")],
                secret="sdk-secret",
                description="from the sdk",
            )
        )
        assert hook.id and str(hook.type) == "organization" and hook.organization
        page, _ = api.webhooks_api.list()
        assert [w.id for w in page.results] == [hook.id]
        delivery, _ = api.webhooks_api.create_ping(hook.id)
        assert delivery.event == "ping" and delivery.status_code == 200
        assert sink.hits[-1].signed_by("sdk-secret")
        project = client.projects.create({"name": "hooked", "labels": []})
        project.update({"name": "hooked again"})
        hits = sink.wait_for(3)
        assert [h.payload["event"] for h in hits] == ["ping", "create:project", "update:project"]
        assert hits[2].payload["changes"]["name"] == {"from": "hooked", "to": "hooked again"}
        deadline = time.monotonic() + 20
        while True:
            deliveries, _ = api.webhooks_api.list_deliveries(hook.id)
            done = [d for d in deliveries.results if d.status_code == 200]
            if len(done) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert deliveries.count == 3 and len(done) == 3
        one, _ = api.webhooks_api.retrieve_deliveries(str(done[-1].id), hook.id)
        assert one.request["event"] in ("ping", "create:project", "update:project")
        api.webhooks_api.create_deliveries_redelivery(str(one.id), hook.id)
        assert len(sink.wait_for(4)) == 4
        updated, _ = api.webhooks_api.partial_update(
            hook.id,
            patched_webhook_write_request=models.PatchedWebhookWriteRequest(is_active=False),
        )
        assert updated.is_active is False
        got, _ = api.webhooks_api.retrieve(hook.id)
        assert got.last_status == 200 and got.description == "from the sdk"
        api.webhooks_api.destroy(hook.id)
        page, _ = api.webhooks_api.list()
        assert page.count == 0
