"""cvat-sdk 2.80 annotation calls against our server, for jobs and tasks: get, set, update
(create / update / delete), remove by ids and remove all, with tracks, masks and skeletons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cvat_sdk import Client, Config, models
from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction
from cvat_sdk.masks import encode_mask

from tests.compat.conftest import LiveServer
from tests.factories import LABELS, add_frames

pytestmark = pytest.mark.compat


def _client(server: LiveServer, tmp_path: Path) -> Client:
    client = Client(server.url, config=Config(cache_dir=tmp_path / "cache"))
    client.login((server.user.username, server.password))
    return client


def _payload(labels: dict[str, Any], frame: int) -> models.LabeledDataRequest:
    cat, person = labels["cat"], labels["person"]
    head, hand = (s.id for s in person.sublabels)
    import numpy as np

    bitmap = np.zeros((8, 8), dtype=bool)
    bitmap[2:5, 3:6] = True
    return models.LabeledDataRequest(
        tags=[models.LabeledImageRequest(frame=frame, label_id=cat.id)],
        shapes=[
            models.LabeledShapeRequest(
                type="rectangle", frame=frame, label_id=cat.id, points=[1, 2, 3, 4]
            ),
            models.LabeledShapeRequest(
                type="mask", frame=frame, label_id=cat.id, points=encode_mask(bitmap)
            ),
            models.LabeledShapeRequest(
                type="skeleton",
                frame=frame,
                label_id=person.id,
                points=[],
                elements=[
                    models.SubLabeledShapeRequest(
                        type="points", frame=frame, label_id=head, points=[1, 1]
                    ),
                    models.SubLabeledShapeRequest(
                        type="points", frame=frame, label_id=hand, points=[2, 2]
                    ),
                ],
            ),
        ],
        tracks=[
            models.LabeledTrackRequest(
                frame=frame,
                label_id=cat.id,
                shapes=[
                    models.TrackedShapeRequest(type="rectangle", frame=frame, points=[0, 0, 5, 5]),
                    models.TrackedShapeRequest(
                        type="rectangle", frame=frame + 2, points=[2, 2, 7, 7], outside=True
                    ),
                ],
            ),
            models.LabeledTrackRequest(
                frame=frame,
                label_id=person.id,
                shapes=[models.TrackedShapeRequest(type="skeleton", frame=frame, points=[])],
                elements=[
                    models.SubLabeledTrackRequest(
                        frame=frame,
                        label_id=head,
                        shapes=[
                            models.TrackedShapeRequest(type="points", frame=frame, points=[3, 3])
                        ],
                    ),
                    models.SubLabeledTrackRequest(
                        frame=frame,
                        label_id=hand,
                        shapes=[
                            models.TrackedShapeRequest(type="points", frame=frame, points=[4, 4])
                        ],
                    ),
                ],
            ),
        ],
    )


def _counts(data: Any) -> tuple[int, int, int]:
    return len(data.tags), len(data.shapes), len(data.tracks)


@pytest.mark.parametrize("level", ["job", "task"])
def test_annotation_crud(live_server: LiveServer, tmp_path: Path, level: str) -> None:
    with _client(live_server, tmp_path) as client:
        task = client.tasks.create({"name": f"ann-{level}", "labels": LABELS, "segment_size": 5})
        add_frames(live_server.db, task.id, 10)
        task.fetch()
        labels = {label.name: label for label in task.get_labels()}
        jobs = sorted(task.get_jobs(), key=lambda j: j.start_frame)
        target: Any = client.jobs.retrieve(jobs[0].id) if level == "job" else task
        frame = 0 if level == "job" else 6

        updated_before = task.updated_date
        target.set_annotations(_payload(labels, frame))
        data = target.get_annotations()
        assert _counts(data) == (1, 3, 2)
        task.fetch()
        assert task.updated_date > updated_before
        skeleton = next(s for s in data.shapes if s.type.value == "skeleton")
        assert len(skeleton.elements) == 2
        mask = next(s for s in data.shapes if s.type.value == "mask")
        assert mask.points[-4:] == [3.0, 2.0, 5.0, 4.0]
        skeleton_track = next(t for t in data.tracks if t.elements)
        assert len(skeleton_track.elements) == 2

        # update: change a rectangle; create: add one; delete: remove the tag
        rect = next(s for s in data.shapes if s.type.value == "rectangle")
        changed = models.LabeledShapeRequest(**{**rect.to_dict(), "points": [5, 5, 9, 9]})
        target.update_annotations(
            models.PatchedLabeledDataRequest(shapes=[changed]), action=AnnotationUpdateAction.UPDATE
        )
        target.update_annotations(
            models.PatchedLabeledDataRequest(
                shapes=[
                    models.LabeledShapeRequest(
                        type="polygon",
                        frame=frame,
                        label_id=labels["cat"].id,
                        points=[0, 0, 4, 0, 4, 4],
                    )
                ]
            ),
            action=AnnotationUpdateAction.CREATE,
        )
        target.update_annotations(
            models.PatchedLabeledDataRequest(
                tags=[models.LabeledImageRequest(**data.tags[0].to_dict())]
            ),
            action=AnnotationUpdateAction.DELETE,
        )
        data = target.get_annotations()
        assert _counts(data) == (0, 4, 2)
        assert next(s for s in data.shapes if s.id == rect.id).points == [5.0, 5.0, 9.0, 9.0]

        # remove by ids (the SDK reads everything back and sends the full objects of every
        # section whose id is listed: shape and track ids are separate sequences, as in CVAT)
        polygon = next(s for s in data.shapes if s.type.value == "polygon")
        ids = {polygon.id, data.tracks[0].id}
        target.remove_annotations(ids=list(ids))
        left = target.get_annotations()
        assert _counts(left) == (
            0,
            sum(s.id not in ids for s in data.shapes),
            sum(t.id not in ids for t in data.tracks),
        )
        assert polygon.id not in {s.id for s in left.shapes}
        assert data.tracks[0].id not in {t.id for t in left.tracks}

        target.remove_annotations()
        assert _counts(target.get_annotations()) == (0, 0, 0)


def test_a_client_leaving_mid_stream_frees_the_session(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A GET stream that the client abandons closes its cursor and returns its connection."""
    import time

    import httpx

    with _client(live_server, tmp_path) as client:
        task = client.tasks.create({"name": "stream", "labels": LABELS})
        add_frames(live_server.db, task.id, 10)
        cat = next(label for label in task.get_labels() if label.name == "cat")
        job = task.get_jobs()[0]
        shapes = [
            {"type": "rectangle", "frame": i % 10, "label_id": cat.id, "points": [i, 0, 5, 5]}
            for i in range(30_000)
        ]
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        auth = {"Authorization": f"Token {live_server.user.token}"}
        r = http.put(f"/api/jobs/{job.id}/annotations/", json={"shapes": shapes}, headers=auth)
        assert r.status_code == 200, r.text
        pool = live_server.db.engine.pool
        before = pool.checkedout()  # type: ignore[attr-defined]
        with http.stream("GET", f"/api/jobs/{job.id}/annotations/", headers=auth) as response:
            assert response.status_code == 200
            first = next(response.iter_bytes())
            assert first.startswith(b'{"version":0')
        deadline = time.monotonic() + 10
        while pool.checkedout() > before and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        assert pool.checkedout() <= before  # type: ignore[attr-defined]
        whole = http.get(f"/api/jobs/{job.id}/annotations/", headers=auth).json()
        assert len(whole["shapes"]) == 30_000
