"""Settings, Ray runtime bootstrap, names, errors and the ``cvat-ray`` CLI."""
