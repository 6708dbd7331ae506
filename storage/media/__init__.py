"""Media: file kinds, image and video decoding, archives, sources, chunks, caches, uploads.

Nothing here touches the database or Ray: the processing pipeline and the serving code in
``cvat_ray.storage.services`` compose these pieces.
"""
