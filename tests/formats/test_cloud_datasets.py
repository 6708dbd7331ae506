"""Exports written to, and imports read from, a cloud storage (S3 on moto)."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import boto3

from cvat_ray.cluster.settings import Settings
from tests.cloud_servers import StorageServer, put_object
from tests.conftest import Account
from tests.factories import images, labelled_task, wait


def _get(server: StorageServer, key: str) -> bytes:
    s3 = boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )  # fmt: skip
    return s3.get_object(Bucket=server.bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


async def test_export_to_and_import_from_s3(
    client_for: Any, alice: Account, s3_server: StorageServer, settings: Settings
) -> None:
    settings.media.remote_allowlist = "127.0.0.1/32"
    api = client_for(alice)
    r = await api.post(
        "/api/cloudstorages",
        json={"provider_type": s3_server.provider, "resource": s3_server.bucket,
              "display_name": "datasets", **s3_server.fields},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    storage_id = r.json()["id"]
    task = await labelled_task(api, images(2))
    cat = task["labels_by_name"]["cat"]["id"]
    r = await api.put(
        f"/api/tasks/{task['id']}/annotations/",
        json={
            "shapes": [{"type": "rectangle", "frame": 0, "label_id": cat, "points": [1, 2, 3, 4]}]
        },
    )
    assert r.status_code == 200
    r = await api.post(
        f"/api/tasks/{task['id']}/dataset/export",
        params={"format": "COCO 1.0", "save_images": "True", "location": "cloud_storage",
                "cloud_storage_id": storage_id, "filename": "exports/task.zip"},
    )  # fmt: skip
    assert r.status_code == 202, r.text
    body = await wait(api, r.json()["rq_id"])
    assert body["status"] == "finished", body
    assert body["result_url"] is None
    with zipfile.ZipFile(io.BytesIO(_get(s3_server, "exports/task.zip"))) as zf:
        assert "annotations/instances_default.json" in zf.namelist()
        assert "images/default/img_01.jpg" in zf.namelist()
    # import it back from the bucket into a fresh task
    put_object(s3_server, "imports/again.zip", _get(s3_server, "exports/task.zip"))
    fresh = await labelled_task(api, images(2))
    r = await api.post(
        f"/api/tasks/{fresh['id']}/annotations/",
        params={"format": "COCO 1.0", "location": "cloud_storage",
                "cloud_storage_id": storage_id, "filename": "imports/again.zip"},
    )  # fmt: skip
    assert r.status_code == 202, r.text
    body = await wait(api, r.json()["rq_id"])
    assert body["status"] == "finished", body
    shapes = (await api.get(f"/api/tasks/{fresh['id']}/annotations/")).json()["shapes"]
    assert [(s["frame"], s["points"]) for s in shapes] == [(0, [1, 2, 3, 4])]
    # a key that is not there: a failed request saying so
    r = await api.post(
        f"/api/tasks/{fresh['id']}/annotations/",
        params={"format": "COCO 1.0", "location": "cloud_storage",
                "cloud_storage_id": storage_id, "filename": "imports/missing.zip"},
    )  # fmt: skip
    body = await wait(api, r.json()["rq_id"])
    assert body["status"] == "failed" and "not found" in str(body["message"])
