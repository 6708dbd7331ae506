"""Function specs: validation with readable errors, CVAT's function objects, label mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvat_ray.actors.functions.output import rle_decode, rle_encode
from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.serve_apps.deploy import builtin_spec_dir
from cvat_ray.storage.functions.mapping import (
    Target,
    TaskLabel,
    compatible,
    resolve,
    to_labeled_data,
)
from cvat_ray.storage.functions.spec import load_spec_file, parse_spec, spec_files
from cvat_ray.storage.schemas.lambda_ import MappingEntry

BASE = {
    "id": "det",
    "name": "A detector",
    "kind": "detector",
    "labels": [{"name": "car", "type": "rectangle"}, {"name": "person"}],
    "runtime": {"class": "colour"},
}


def test_builtin_specs_are_valid() -> None:
    specs = [load_spec_file(p) for p in spec_files(builtin_spec_dir())]
    assert {s.id for s in specs} == {
        "colour-detector",
        "face-detector",
        "person-detector",
        "grabcut",
        "mil-tracker",
    }
    kinds = {s.id: s.kind for s in specs}
    assert kinds["grabcut"] == "interactor" and kinds["mil-tracker"] == "tracker"
    for spec in specs:
        assert spec.autoscaling.min_replicas == 0  # built-ins scale to zero


def test_cvat_function_object() -> None:
    spec = parse_spec(BASE)
    body = spec.to_cvat()
    assert body["id"] == "det" and body["kind"] == "detector" and body["version"] == 1
    assert [lb["name"] for lb in body["labels_v2"]] == ["car", "person"]
    assert body["labels_v2"][1]["type"] == "any"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "Bad Id"}, "id: id must be"),
        ({"kind": "segmenter"}, "kind: Input should be"),
        ({"runtime": {}}, "runtime needs exactly one of"),
        ({"runtime": {"class": "x", "onnx": "m.onnx"}}, "runtime needs exactly one of"),
        ({"labels": []}, "a detector needs at least one label"),
        ({"labels": [{"name": "a"}, {"name": "a"}]}, "label names must be unique; 'a'"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 1}}, "min_replicas must not exceed"),
        ({"batching": {"max_batch_size": 0}}, "batching.max_batch_size"),
        ({"resources": {"num_gpus": -1}}, "resources.num_gpus"),
        ({"unknown_key": 1}, "unknown_key: Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_spec({**BASE, **change}, source="f.yaml")
    assert "f.yaml: " in str(err.value.detail)
    assert message in str(err.value.detail)


def test_spec_files_resolve_relative_model_paths(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    spec_path = tmp_path / "fn.yaml"
    spec_path.write_text(
        "id: onnx-det\nname: N\nkind: detector\nlabels: [{name: a}]\nruntime: {onnx: model.onnx}\n"
    )
    spec = load_spec_file(spec_path)
    assert spec.runtime.onnx == str(tmp_path / "model.onnx")
    spec_path.write_text(
        "id: onnx-det\nname: N\nkind: detector\nlabels: [{name: a}]\nruntime: {onnx: gone.onnx}\n"
    )
    with pytest.raises(InvalidInput, match=r"runtime.onnx: file .*gone.onnx does not exist"):
        load_spec_file(spec_path)
    spec_path.write_text("id: [unclosed\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_spec_file(spec_path)
    spec_path.write_text("- a list\n")
    with pytest.raises(InvalidInput, match="must be a mapping"):
        load_spec_file(spec_path)


def test_type_compatibility_follows_cvat() -> None:
    assert compatible("rectangle", "rectangle")
    assert compatible("any", "polygon") and compatible("rectangle", "any")
    assert compatible("mask", "polygon") and compatible("polygon", "mask")
    assert not compatible("any", "skeleton") and not compatible("rectangle", "polygon")


LABELS = [
    TaskLabel(1, "car", "rectangle", {"color": (11, "select", ("red", "blue"))}),
    TaskLabel(2, "pedestrian", "any"),
    TaskLabel(3, "person", "skeleton"),
]


def test_default_mapping_by_name_and_type() -> None:
    label_map = resolve(parse_spec(BASE), LABELS, None)
    # person (any) cannot go to a skeleton label
    assert set(label_map) == {"car"}
    assert label_map["car"].label_id == 1


def test_explicit_mapping_and_its_errors() -> None:
    spec = parse_spec(BASE)
    label_map = resolve(spec, LABELS, {"person": MappingEntry(name="pedestrian")})
    assert label_map == {"person": Target(2, "any", {})}
    with pytest.raises(InvalidInput, match="The task has no labels named: bike, truck"):
        resolve(
            spec, LABELS, {"car": MappingEntry(name="truck"), "person": MappingEntry(name="bike")}
        )
    with pytest.raises(InvalidInput, match="has no labels named: dog"):
        resolve(spec, LABELS, {"dog": MappingEntry(name="car")})
    with pytest.raises(InvalidInput, match="cannot go to the task label 'person'"):
        resolve(spec, LABELS, {"car": MappingEntry(name="person")})
    with pytest.raises(InvalidInput, match="has no attributes named: size"):
        resolve(spec, LABELS, {"car": MappingEntry(name="car", attributes={"c": "size"})})


def test_model_output_becomes_auto_shapes_with_scores() -> None:
    label_map = resolve(parse_spec(BASE), LABELS, None)
    output = [
        {
            "label": "car",
            "type": "rectangle",
            "points": [1, 2, 3, 4],
            "confidence": 0.75,
            "attributes": [{"name": "color", "value": "red"}],
        },
        {
            "label": "car",
            "type": "rectangle",
            "points": [1, 2, 3, 4],
            "confidence": 0.5,
            "attributes": [{"name": "color", "value": "green"}],
        },  # not an allowed value: dropped
        {"label": "person", "type": "rectangle", "points": [0, 0, 1, 1], "confidence": 0.9},
    ]
    data = to_labeled_data([(7, output)], label_map, roi=None)
    assert len(data.shapes) == 2
    first = data.shapes[0]
    assert (first.frame, first.label_id, first.source, first.score) == (7, 1, "auto", 0.75)
    assert [(a.spec_id, a.value) for a in first.attributes] == [(11, "red")]
    assert data.shapes[1].attributes == []
    inside = to_labeled_data([(0, output)], label_map, roi=[0, 0, 2, 2])
    assert len(inside.shapes) == 0  # box centres (2, 3) are outside the roi


def test_mask_rle_round_trip() -> None:
    import numpy as np

    mask = np.zeros((5, 7), dtype=np.uint8)
    mask[1:4, 2:6] = 1
    rle = rle_encode(mask)
    assert rle[0] == 9  # zeros before the first one, row by row
    assert (rle_decode(rle, 7, 5) == mask).all()
    full = np.ones((2, 2), dtype=np.uint8)
    assert rle_encode(full) == [0, 4]


def test_replicas_take_a_runs_share_of_requests_and_one_more() -> None:
    """A replica's ``max_ongoing_requests``: a whole-task run's share (its tasks' requests
    in flight) plus one, so the run's routers cannot pile its batches on one replica; a
    higher autoscaling target raises it."""
    from cvat_ray.actors.stages import RUN_REQUESTS_PER_REPLICA
    from cvat_ray.serve_apps.deploy import function_applications
    from cvat_ray.serve_apps.function_app import function_deployment, max_ongoing_requests

    spec = parse_spec({**BASE, "autoscaling": {"target_ongoing_requests": 2}}, source="fn.yaml")
    assert max_ongoing_requests(spec, 2) == RUN_REQUESTS_PER_REPLICA + 1 == 5
    busy = parse_spec({**BASE, "autoscaling": {"target_ongoing_requests": 7.5}}, source="fn.yaml")
    assert max_ongoing_requests(busy, 2) == 8
    # the Serve config carries it, and Serve's deployment takes it from there
    (entry,) = function_applications([spec], cpus=2)
    options = {k: v for k, v in entry["deployments"][0].items() if k != "name"}
    assert options["max_ongoing_requests"] == 5
    assert function_deployment(options).max_ongoing_requests == 5


def test_gpu_runs_keep_a_request_per_cpu_at_each_replica() -> None:
    """A whole-task run on GPU replicas sends from a task per two CPUs with enough requests
    in flight that each replica holds one per CPU (it decodes and postprocesses them in its
    threads while the device runs batches); the replicas accept that many and one more.
    CPU functions keep two tasks per replica with two requests each."""
    from cvat_ray.actors.stages import IN_FLIGHT, TASKS_PER_REPLICA, run_shape
    from cvat_ray.serve_apps.function_app import max_ongoing_requests

    cpu = parse_spec({**BASE, "autoscaling": {"max_replicas": 3}}, source="fn.yaml")
    assert run_shape(cpu, 16) == (TASKS_PER_REPLICA * 3, IN_FLIGHT)
    gpu = parse_spec(
        {**BASE, "resources": {"num_gpus": 1}, "autoscaling": {"max_replicas": 1}},
        source="fn.yaml",
    )
    tasks, in_flight = run_shape(gpu, 16)
    assert tasks == 8 and tasks * in_flight >= 16 + 4
    assert max_ongoing_requests(gpu, 16) == tasks * in_flight + 1
    two = parse_spec(
        {**BASE, "resources": {"num_gpus": 1}, "autoscaling": {"max_replicas": 2}},
        source="fn.yaml",
    )
    tasks, in_flight = run_shape(two, 16)
    assert tasks * in_flight >= 2 * (16 + 4)
    # a small cluster still gets a task per replica's share
    assert run_shape(gpu, 2)[0] == TASKS_PER_REPLICA
