"""Task and project backups in CVAT's backup zip (format version ``"1.0"``).

A task backup holds ``task.json`` (the task, its labels by name, its data settings and its
jobs), ``annotations.json`` (one ``{version, tags, shapes, tracks, intervals}`` per job, in
job order, with label and attribute *names* instead of ids) and ``data/`` (the media as
uploaded, plus CVAT's ``manifest.jsonl``). A project backup holds ``project.json`` and one
``task_<index>/`` folder per task, the index counting tasks in id order from 0.

- :mod:`.layout`: the manifests and the id <-> name conversions, pure functions;
- :mod:`.writer`: writes a task or project into a zip, media streamed file by file;
- :mod:`.reader`: reads and checks a backup, then restores it in one transaction.

The background requests (``export:backup``, ``import:backup``) that run them are in
:mod:`cvat_ray.storage.services.backups`.
"""
