"""CVAT "functions" (models) as data: the spec file format, label mapping, and the
conversion of model output into annotations. No model code lives here (see
``cvat_ray.actors.functions``), so the API can validate and list functions without loading one."""
