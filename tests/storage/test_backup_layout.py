"""The backup's id -> name conversion on the database's JSON text agrees with the one on
parsed objects, whatever the strings hold."""

from __future__ import annotations

import json

import pytest

from cvat_ray.storage.backups.layout import IdNames, TextNames, to_names

NAMES = IdNames({3: "car", 4: 'we"ird \\ label', 5: "head"}, {7: "colour", 8: "id"})

TRICKY = [
    'x","label_id":4,"id":1}',
    '{"id":2,"label_id":3}',
    '\\","spec_id":7',
    "ends with a backslash \\",
    "ünïcødé",
]


@pytest.mark.parametrize("value", TRICKY)
def test_text_conversion_matches_the_object_conversion(value: str) -> None:
    shape = {
        "type": "skeleton", "occluded": False, "outside": False, "z_order": 0,
        "rotation": 0.0, "points": [], "id": 12, "label_id": 4, "group": 0,
        "source": "manual", "frame": 3,
        "attributes": [{"spec_id": 7, "value": value}, {"spec_id": 8, "value": "id"}],
        "score": 1.0,
        "elements": [{"type": "points", "points": [1.0, 2.0], "id": 13, "label_id": 5,
                      "frame": 3, "attributes": [], "score": 1.0}],
    }  # fmt: skip
    track = {
        "id": 9, "label_id": 3, "group": 1, "source": "auto", "frame": 0,
        "attributes": [{"spec_id": 7, "value": value}],
        "shapes": [{"type": "rectangle", "points": [0.0, 0.0, 1.0, 1.0], "frame": 0,
                    "attributes": [], "id": None}],
        "elements": [],
    }  # fmt: skip
    text = TextNames.of(NAMES)
    for obj in (shape, track):
        compact = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        assert json.loads(text.convert(compact)) == to_names(obj, NAMES)
