"""What a service call knows about the request that made it."""

from __future__ import annotations

from dataclasses import dataclass

from cvat_ray.iam.principal import OrgContext, Principal


@dataclass(frozen=True)
class RequestContext:
    principal: Principal
    org: OrgContext
    # Absolute base URL for links in responses, e.g. "http://127.0.0.1:8080"
    base_url: str
    # The request's X-Request-Id (events and webhook payloads carry it); "" outside a request.
    request_id: str = ""
    # The client's address (X-Forwarded-For believed only from trusted proxies); "" outside a
    # request.
    remote_addr: str = ""

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"
