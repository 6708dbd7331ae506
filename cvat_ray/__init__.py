"""cvat-ray: a CVAT-compatible annotation server built on Ray.

The installed distribution has this one top-level package. Its layers are the card's folders at
the top of the repository (``cluster``, ``storage``, ``iam``, ``analytics``, ``actors``,
``serve_apps``), linked here as subpackages, so every import reads ``cvat_ray.<layer>...`` and
nothing generic lands in site-packages. ``cvat_ray.cli`` is the composition root.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cvat-ray")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
