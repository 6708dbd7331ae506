"""MOT 1.1 (MOT Challenge ground truth): ``gt/gt.txt`` with one line per box,
``frame,track_id,x,y,w,h,not_ignored,class_id,visibility`` (frames and classes counted from
1), ``gt/labels.txt`` (the class names) and ``img1/<frame:06d>.<ext>`` with images.

Kept: rectangles, tracks (their box on every visible frame, with the track's id; a plain
box has track id -1), ``occluded`` (visibility 0) and the label. Dropped: other shapes,
attributes, tags, rotation, z_order.

Import: lines with a track id become tracks (a keyframe per line; a gap in the frames ends
the track there and it resumes at the next line), the others plain boxes; frames by number.
"""

from __future__ import annotations

from collections import defaultdict

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Shape, Track, TrackKey


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    names = [label.name for label in ds.meta.labels]
    index = {n: i + 1 for i, n in enumerate(names)}
    out.write("gt/labels.txt", "".join(n + "\n" for n in names).encode(), compress=True)
    with out.open("gt/gt.txt") as f:
        for item in ds.items():
            rows = []
            for s in item.shapes:
                if s.type != "rectangle" or s.label not in index:
                    continue
                x1, y1, x2, y2 = s.points
                track = s.track_id if s.track_id is not None else -1
                rows.append(
                    f"{item.frame + 1},{track},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                    f"1,{index[s.label]},{0 if s.occluded else 1}\n"
                )
            if rows:
                f.write("".join(rows).encode())
    if save_images:
        for item, data, ext in ds.images():
            out.write(f"img1/{item.frame + 1:06d}{ext}", data)


def read(archive: Archive, fmt: str = "") -> Parsed:
    gt = [n for n in archive.names("gt.txt") if n.rpartition("/")[2] == "gt.txt"]
    if not gt:
        raise InvalidInput("The upload has no gt/gt.txt.")
    labels_file = [n for n in archive.names("labels.txt") if n.rpartition("/")[2] == "labels.txt"]
    labels = (
        [x.strip() for x in archive.text(labels_file[0]).splitlines() if x.strip()]
        if labels_file
        else []
    )
    parsed = Parsed(by_frame=True)
    items: dict[int, Item] = {}
    tracks: dict[int, list[tuple[int, TrackKey, str]]] = defaultdict(list)
    for n, line in enumerate(archive.text(gt[0]).splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        try:
            frame, track_id = int(float(parts[0])) - 1, int(float(parts[1]))
            x, y, w, h = (float(v) for v in parts[2:6])
            cls = int(float(parts[7])) if len(parts) > 7 else 1
            visibility = float(parts[8]) if len(parts) > 8 else 1.0
        except (ValueError, IndexError):
            raise InvalidInput(
                f"gt.txt:{n}: expected 'frame,id,x,y,w,h,conf,class,visibility'."
            ) from None
        if frame < 0:
            raise InvalidInput(f"gt.txt:{n}: frames are counted from 1.")
        if labels and not 1 <= cls <= len(labels):
            raise InvalidInput(f"gt.txt:{n}: class {cls} is not in labels.txt.")
        label = labels[cls - 1] if labels else str(cls)
        points = [x, y, x + w, y + h]
        occluded = visibility == 0
        if track_id < 0:
            item = items.setdefault(frame, Item(frame, ""))
            item.shapes.append(Shape("rectangle", label, points, occluded=occluded))
        else:
            key = TrackKey(frame, "rectangle", points, occluded=occluded)
            tracks[track_id].append((frame, key, label))
    for rows in tracks.values():
        rows.sort(key=lambda r: r[0])
        keys: list[TrackKey] = []
        for (frame, key, _), nxt in zip(rows, [*rows[1:], None], strict=True):
            keys.append(key)
            if nxt is None or nxt[0] > frame + 1:
                keys.append(TrackKey(frame + 1, "rectangle", key.points, outside=True))
        parsed.tracks.append(Track(rows[0][2], keys))
    parsed.items = [items[f] for f in sorted(items)]
    return parsed
