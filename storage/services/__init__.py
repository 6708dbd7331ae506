"""Domain services: one module per resource. Each public function takes a session and a
:class:`cvat_ray.storage.context.RequestContext`, checks the policy, does the work and returns wire models.
"""
