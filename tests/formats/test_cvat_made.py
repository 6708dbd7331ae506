"""Imports of files laid out as CVAT writes them (CVAT XML 1.1 for images and video, COCO
1.0 as CVAT's exporter writes it, YOLO 1.1's Darknet layout), written here from their
documented layouts, into a task whose frames they name."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Account
from tests.factories import images, import_file, labelled_task, zip_bytes

CVAT_IMAGES_XML = b"""<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>12</id><name>cvat-made</name><size>2</size><mode>annotation</mode>
      <labels>
        <label><name>cat</name><color>#ff0000</color><type>any</type><attributes/></label>
        <label><name>dog</name><color>#00ff00</color><type>any</type>
          <attributes>
            <attribute><name>color</name><mutable>False</mutable><input_type>select</input_type>
              <default_value>a</default_value><values>a
b</values></attribute>
          </attributes>
        </label>
      </labels>
    </task>
    <dumped>2025-01-01 00:00:00.000000+00:00</dumped>
  </meta>
  <image id="0" name="img_00.jpg" width="64" height="48">
    <box label="cat" source="manual" occluded="0" xtl="1.00" ytl="2.00" xbr="30.00" ybr="40.00" z_order="0">
    </box>
    <polygon label="dog" source="manual" occluded="1" points="1.00,1.00;20.00,1.00;20.00,15.00" z_order="2">
      <attribute name="color">b</attribute>
    </polygon>
    <tag label="cat" source="manual">
    </tag>
  </image>
  <image id="1" name="img_01.jpg" width="64" height="48">
    <mask label="cat" source="manual" occluded="0" rle="2, 3, 1, 3" left="4" top="5" width="3" height="3" z_order="0">
    </mask>
  </image>
</annotations>
"""

CVAT_VIDEO_XML = b"""<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><id>3</id><name>v</name><size>3</size><mode>interpolation</mode></task></meta>
  <track id="0" label="cat" source="manual">
    <box frame="0" keyframe="1" outside="0" occluded="0" xtl="0.00" ytl="0.00" xbr="10.00" ybr="10.00" z_order="0"></box>
    <box frame="1" keyframe="0" outside="0" occluded="0" xtl="5.00" ytl="5.00" xbr="15.00" ybr="15.00" z_order="0"></box>
    <box frame="2" keyframe="1" outside="1" occluded="0" xtl="10.00" ytl="10.00" xbr="20.00" ybr="20.00" z_order="0"></box>
  </track>
</annotations>
"""

# COCO as CVAT's exporter writes it: boxes with empty segmentation and CVAT's attributes
CVAT_COCO = {
    "licenses": [{"name": "", "id": 0, "url": ""}],
    "info": {"contributor": "", "date_created": "", "description": "", "url": "",
             "version": "", "year": ""},
    "categories": [{"id": 1, "name": "cat", "supercategory": ""},
                   {"id": 2, "name": "dog", "supercategory": ""}],
    "images": [{"id": 1, "width": 64, "height": 48, "file_name": "img_00.jpg", "license": 0,
                "flickr_url": "", "coco_url": "", "date_captured": 0}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [], "area": 1102.0,
         "bbox": [1.0, 2.0, 29.0, 38.0], "iscrowd": 0,
         "attributes": {"occluded": False, "rotation": 0.0}},
        {"id": 2, "image_id": 1, "category_id": 2,
         "segmentation": [[1.0, 1.0, 20.0, 1.0, 20.0, 15.0]], "area": 133.0,
         "bbox": [1.0, 1.0, 19.0, 14.0], "iscrowd": 0,
         "attributes": {"occluded": True, "color": "b"}},
        {"id": 3, "image_id": 1, "category_id": 1,
         "segmentation": {"counts": [245, 3, 45, 3, 2776], "size": [48, 64]},
         "area": 6.0, "bbox": [5.0, 5.0, 2.0, 3.0], "iscrowd": 1, "attributes": {}},
    ],
}  # fmt: skip


LABELS: list[dict[str, Any]] = [
    {"name": "cat"},
    {"name": "dog", "attributes": [{"name": "color", "mutable": False, "input_type": "select",
                                    "values": ["a", "b"], "default_value": "a"}]},
]  # fmt: skip


async def _imported(api: Any, fmt: str, name: str, data: bytes) -> dict[str, Any]:
    task = await labelled_task(api, images(3), LABELS)
    body = await import_file(api, "task", task["id"], fmt, name, data)
    assert body["status"] == "finished", body
    r = await api.get(f"/api/tasks/{task['id']}/annotations/")
    out: dict[str, Any] = r.json()
    out["names"] = {lb["id"]: lb["name"] for lb in task["labels_by_name"].values()}
    return out


async def test_cvat_xml_for_images(client_for: Any, alice: Account) -> None:
    got = await _imported(
        client_for(alice), "CVAT 1.1", "ann.zip", zip_bytes({"annotations.xml": CVAT_IMAGES_XML})
    )
    names = got["names"]
    shapes = {(s["frame"], s["type"], names[s["label_id"]]): s for s in got["shapes"]}
    assert shapes[(0, "rectangle", "cat")]["points"] == [1, 2, 30, 40]
    polygon = shapes[(0, "polygon", "dog")]
    assert polygon["occluded"] is True and polygon["z_order"] == 2
    assert [a["value"] for a in polygon["attributes"]] == ["b"]
    assert shapes[(1, "mask", "cat")]["points"] == [2, 3, 1, 3, 4, 5, 6, 7]
    assert [(t["frame"], names[t["label_id"]]) for t in got["tags"]] == [(0, "cat")]


async def test_cvat_xml_for_video_keeps_the_track(client_for: Any, alice: Account) -> None:
    got = await _imported(client_for(alice), "CVAT 1.1", "annotations.xml", CVAT_VIDEO_XML)
    (track,) = got["tracks"]
    assert [(s["frame"], s["outside"]) for s in track["shapes"]] == [(0, False), (2, True)]


async def test_cvat_coco(client_for: Any, alice: Account) -> None:
    data = zip_bytes({"annotations/instances_default.json": json.dumps(CVAT_COCO).encode()})
    got = await _imported(client_for(alice), "COCO 1.0", "coco.zip", data)
    names = got["names"]
    kinds = sorted((s["type"], names[s["label_id"]]) for s in got["shapes"])
    assert kinds == [("mask", "cat"), ("polygon", "dog"), ("rectangle", "cat")]
    box = next(s for s in got["shapes"] if s["type"] == "rectangle")
    assert box["points"] == [1, 2, 30, 40]
    mask = next(s for s in got["shapes"] if s["type"] == "mask")
    # column-major runs over the image: x=5..6, y=5..7 -> CVAT box (5,5)-(6,7), all set
    assert mask["points"] == [0, 6, 5, 5, 6, 7]


async def test_cvat_yolo(client_for: Any, alice: Account) -> None:
    data = zip_bytes({
        "obj.names": b"cat\ndog\n",
        "obj.data": b"classes = 2\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n",
        "train.txt": b"data/obj_train_data/img_00.jpg\ndata/obj_train_data/img_01.jpg\n",
        "obj_train_data/img_00.txt": b"1 0.500000 0.500000 0.250000 0.500000\n",
        "obj_train_data/img_01.txt": b"",
    })  # fmt: skip
    got = await _imported(client_for(alice), "YOLO 1.1", "yolo.zip", data)
    (shape,) = got["shapes"]
    assert got["names"][shape["label_id"]] == "dog"
    assert shape["points"] == [24, 12, 40, 36]
