"""Annotations at scale: how tags, shapes and tracks are stored, validated, written and read.

Annotations belong to a job; the task view is the union of its jobs. The pieces:

- ``cvat_ray.storage.models.annotations``: three tables (``labeled_tags``, ``labeled_shapes``,
  ``labeled_tracks``), one row per object. Skeleton elements are rows pointing at their
  parent (``parent_id``); a track's keyframes live in the track row as JSON, as do every
  object's ``points`` and ``attributes``: the exact JSON the API sends. Indexes
  ``(job_id, frame, id)`` serve per-job and per-frame reads in frame order. No per-row
  foreign keys (PostgreSQL checks them one row at a time, which tripled bulk insert time);
  triggers on ``jobs`` and ``labels`` delete a deleted job's or label's annotations in one
  statement, and ``maintenance`` handles attribute specs that are deleted or remapped.
- ``cvat_ray.storage.schemas.annotations``: the wire format as msgspec structs. A body is decoded in
  one C pass into compact objects with types, ranges and required fields checked (errors name
  the path: ``shapes[12].frame``); the cyclic GC is paused meanwhile (it rescanned millions of
  fresh lists over and over).
- ``validation``: the rules that need the task (labels and their types, skeleton sublabels,
  attribute values, frames, point counts, mask RLE, keyframe order, immutable attributes),
  one tight loop per object, 400 naming the index and field.
- ``bulk``: ids allocated up front, rows inserted with PostgreSQL ``COPY`` or SQLite
  ``executemany`` in batches, deletes as one statement per job or per batch of ids.
- ``reads``: each object's JSON is built by the database from the JSON-at-rest columns, so
  Python only joins strings; rows come through a server-side cursor from one snapshot and are
  streamed to the client (``cvat_ray.serve_apps.deps.Caller.stream``), so memory stays flat whatever
  the job's size.
- ``interpolation``: the pure track interpolation function (keyframes, ``outside``,
  skeleton elements), used by ``merge`` and later by exports and trackers.
- ``merge``: task-level writes split into jobs (copies on shared frames, tracks sliced), and
  the task view's merge of overlapping jobs, after CVAT's ``AnnotationManager`` (deviations
  listed there).

Deviations from CVAT, all deliberate:

- keyframes of a track have no ids of their own (``id`` is null): they are part of the track;
- ``source`` is limited to letters, digits, ``.``, ``-`` and ``_`` (CVAT's values all are),
  so it can be written into JSON without escaping;
- keyframes must be ordered by frame and unique, and ids sent to ``update``/``delete`` must
  belong to the job (or task): CVAT silently ignores some of these;
- audio ``intervals`` are accepted only empty;
- merging overlapping jobs matches greedily, by IoU for rectangles and by equality for other
  shapes (CVAT: Hungarian matching, polygon area IoU, no matching for other types).
"""
