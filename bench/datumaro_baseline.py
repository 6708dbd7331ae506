"""datumaro's own COCO exporter and importer, timed: the baseline of ``bench/export.py``.

Run by a Python that has datumaro (PyPI ``datumaro``) in its own virtual environment: datumaro
pins an older Pillow than this project, so the two do not install together. This file imports
nothing of cvat-ray.

    <datumaro python> bench/datumaro_baseline.py export FLAT.json OUT_DIR
    <datumaro python> bench/datumaro_baseline.py import COCO_DIR

``export`` reads what ``bench/export.py`` dumped from the API (frames, labels, and every shape
with tracks already interpolated to per-frame shapes, so none of that work is the
baseline's), builds datumaro's dataset in memory (what CVAT's exporter hands to datumaro) and
writes ``coco_instances`` without images. ``import`` reads a COCO export with datumaro's
``coco_instances`` importer and walks every annotation. Each prints one JSON line: seconds
and the process's peak RSS growth in MiB (sampled from /proc every 20 ms).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class Peak:
    def __init__(self) -> None:
        self.start = _rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def export(flat: Path, out: Path) -> None:
    import datumaro as dm
    from datumaro.components.annotation import AnnotationType, Bbox, LabelCategories, Polygon
    from datumaro.components.media import Image

    doc: dict[str, Any] = json.loads(flat.read_text())
    labels = doc["labels"]
    index = {label_id: n for n, label_id in enumerate(labels)}
    per_frame: list[list[Any]] = [[] for _ in doc["frames"]]
    for frame, label_id, kind, points in doc["shapes"]:
        n = index[label_id]
        if kind == "rectangle":
            x1, y1, x2, y2 = points
            per_frame[frame].append(Bbox(x1, y1, x2 - x1, y2 - y1, label=n))
        elif kind == "polygon":
            per_frame[frame].append(Polygon(points, label=n))
    items = [
        dm.DatasetItem(
            id=f["name"].rsplit(".", 1)[0],
            subset="default",
            media=Image.from_file(path=f["name"], size=(f["height"], f["width"])),
            annotations=per_frame[i],
        )
        for i, f in enumerate(doc["frames"])
    ]
    categories = {AnnotationType.label: LabelCategories.from_iterable(str(x) for x in labels)}
    dataset = dm.Dataset.from_iterable(items, categories=categories)
    dataset.export(str(out), "coco_instances", save_media=False)


def import_(folder: Path) -> int:
    import datumaro as dm

    dataset = dm.Dataset.import_from(str(folder), "coco_instances")
    return sum(len(item.annotations) for item in dataset)


def main() -> None:
    mode = sys.argv[1]
    # the code is loaded before measuring (memory of code, not of work)
    import datumaro
    import datumaro.plugins.data_formats.coco  # noqa: F401

    with Peak() as peak:
        started = time.perf_counter()
        if mode == "export":
            export(Path(sys.argv[2]), Path(sys.argv[3]))
            count = -1
        else:
            count = import_(Path(sys.argv[2]))
        seconds = time.perf_counter() - started
    mib = (peak.peak - peak.start) / 2**20
    print(json.dumps({"seconds": seconds, "peak_mib": mib, "annotations": count}))


if __name__ == "__main__":
    main()
