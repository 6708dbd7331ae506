"""cvat-sdk 2.80's ``projects.create_from_dataset``: a project made from a spec, then a
dataset with images imported into it (``POST /api/projects/{id}/dataset``), which makes a
task per subset with the dataset's images and annotations; bad archives fail whole."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cvat_sdk import Client, models
from cvat_sdk.core.exceptions import BackgroundRequestException

from tests.compat.conftest import LiveServer
from tests.compat.test_sdk_datasets import _client
from tests.media_files import write_images

pytestmark = pytest.mark.compat

LABELS = ("cat", "dog")


def _spec(name: str, labels: tuple[str, ...] = LABELS) -> models.ProjectWriteRequest:
    return models.ProjectWriteRequest(
        name=name, labels=[models.PatchedLabelRequest(name=n) for n in labels]
    )


def _source(client: Client, tmp_path: Path) -> Any:
    """A project with one annotated task of 3 images."""
    project = client.projects.create(_spec("source"))
    task = client.tasks.create_from_data(
        spec=models.TaskWriteRequest(name="images", project_id=project.id),
        resources=write_images(tmp_path / "source", 3),
    )
    ids = {lb.name: lb.id for lb in project.get_labels()}
    task.set_annotations(
        models.LabeledDataRequest(
            shapes=[
                models.LabeledShapeRequest(
                    type="rectangle", frame=0, label_id=ids["cat"], points=[1, 2, 9, 9]
                ),
                models.LabeledShapeRequest(
                    type="polygon", frame=2, label_id=ids["dog"], points=[1, 1, 8, 1, 8, 8]
                ),
                models.LabeledShapeRequest(
                    type="rectangle", frame=2, label_id=ids["dog"], points=[10, 10, 20, 30]
                ),
            ]
        )
    )
    return project, task


def _frames(task: Any) -> list[tuple[str, int, int, bytes]]:
    meta = task.get_meta()
    return [
        (f.name, f.width, f.height, task.get_frame(i, quality="original").read())
        for i, f in enumerate(meta.frames)
    ]


def _shapes(task: Any) -> list[tuple[int, str, str, tuple[float, ...]]]:
    names = {lb.id: lb.name for lb in task.get_labels()}
    got = task.get_annotations()
    return sorted(
        (s.frame, s.type.value, names[s.label_id], tuple(round(p, 2) for p in s.points))
        for s in got.shapes
    )


@pytest.mark.parametrize(
    ("export_format", "import_format"),
    [("COCO 1.0", "COCO 1.0"), ("CVAT for images 1.1", "CVAT 1.1")],
)
def test_create_from_dataset_makes_tasks(
    live_server: LiveServer, tmp_path: Path, export_format: str, import_format: str
) -> None:
    with _client(live_server, tmp_path) as client:
        source, task = _source(client, tmp_path)
        archive = tmp_path / "dataset.zip"
        source.export_dataset(export_format, archive, include_images=True)
        project = client.projects.create_from_dataset(
            _spec("from-dataset"), dataset_path=str(archive), dataset_format=import_format
        )
        assert [lb.name for lb in project.get_labels()] == list(LABELS)
        (made,) = project.get_tasks()
        assert (made.name, made.subset, made.size) == ("default", "default", 3)
        assert _frames(made) == _frames(task)
        assert _shapes(made) == _shapes(task)
        # the task serves chunks as an uploaded task does
        chunk = io.BytesIO()
        made.download_chunk(0, chunk, quality="compressed")
        with zipfile.ZipFile(chunk) as zf:
            assert len(zf.namelist()) == 3


def test_create_from_dataset_without_spec_labels(live_server: LiveServer, tmp_path: Path) -> None:
    """A project created without labels takes the dataset's (as CVAT)."""
    with _client(live_server, tmp_path) as client:
        source, task = _source(client, tmp_path)
        archive = tmp_path / "dataset.zip"
        source.export_dataset("CVAT for images 1.1", archive, include_images=True)
        project = client.projects.create_from_dataset(
            models.ProjectWriteRequest(name="no-labels"),
            dataset_path=str(archive),
            dataset_format="CVAT 1.1",
        )
        assert sorted(lb.name for lb in project.get_labels()) == list(LABELS)
        (made,) = project.get_tasks()
        assert _shapes(made) == _shapes(task)


def _rewrite(src: Path, dest: Path, drop: str) -> None:
    """``src`` without the members whose names contain ``drop``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            if drop not in info.filename:
                zout.writestr(info, zin.read(info))


def test_create_from_dataset_bad_input_leaves_no_tasks(
    live_server: LiveServer, tmp_path: Path
) -> None:
    with _client(live_server, tmp_path) as client:
        source, _ = _source(client, tmp_path)
        archive = tmp_path / "dataset.zip"
        source.export_dataset("COCO 1.0", archive, include_images=True)
        before = {t.id for t in client.tasks.list()}

        # a label of the dataset that the project spec lacks
        with pytest.raises(BackgroundRequestException, match='label with name "dog"'):
            client.projects.create_from_dataset(
                _spec("only-cat", ("cat",)), dataset_path=str(archive), dataset_format="COCO 1.0"
            )
        (only_cat,) = [p for p in client.projects.list() if p.name == "only-cat"]
        assert only_cat.get_tasks() == []

        # an image the annotations list is missing from the archive
        missing = tmp_path / "missing.zip"
        _rewrite(archive, missing, "img_001")
        with pytest.raises(BackgroundRequestException, match="no image for 'img_001"):
            client.projects.create_from_dataset(
                _spec("missing"), dataset_path=str(missing), dataset_format="COCO 1.0"
            )
        (gone,) = [p for p in client.projects.list() if p.name == "missing"]
        assert gone.get_tasks() == []
        assert {t.id for t in client.tasks.list()} == before
        # nothing of the failed imports is left in the data folders
        staging = live_server.settings.media_dir / "staging"
        assert not staging.exists() or not any(staging.iterdir())
        # the failed request is readable through the requests API
        failed = [
            r
            for r in client.api_client.requests_api.list(status="failed")[0].results
            if r.operation.type == "import:dataset"
        ]
        assert len(failed) >= 2 and all("The import failed" in r.message for r in failed)
