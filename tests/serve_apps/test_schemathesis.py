"""Property-based fuzzing of the served OpenAPI: no request may produce a 500."""

from __future__ import annotations

import hypothesis
import schemathesis
from hypothesis import HealthCheck

from cvat_ray.storage.db import Database
from cvat_ray.storage.models import User
from cvat_ray.storage.services.authn import start_session
from tests.conftest import Account
from tests.factories import LABELS, add_frames

EXAMPLES = 40
# Ending our own session or account would only turn the rest of the run into 401s.
SKIP = {("POST", "/api/auth/logout"), ("DELETE", "/api/users/{user_id}")}


def _fresh_token(db: Database, user_id: int) -> str:
    with db.session() as session:
        user = session.get(User, user_id)
        assert user is not None
        return start_session(session, user, 600, "token").key


def test_no_request_produces_a_server_error(app, db: Database, admin: Account) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        auth = {"Authorization": f"Token {admin.token}"}
        project = client.post(
            "/api/projects", json={"name": "p", "labels": LABELS}, headers=auth
        ).json()
        task = client.post(
            "/api/tasks", json={"name": "t", "project_id": project["id"]}, headers=auth
        ).json()
        add_frames(db, task["id"], 4)

    schema = schemathesis.openapi.from_asgi("/api/schema", app)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        if (operation.method.upper(), operation.path) in SKIP:
            continue

        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            token = _fresh_token(db, admin.id)
            response = case.call(headers={"Authorization": f"Token {token}"})
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                )

        run()
    assert not failures, "\n".join(failures[:20])
