"""Every row of CVAT's 16 permission tables, expanded, checked against the Rego engine.

For each table and scope, every combination of context (sandbox, organization), the caller's
relation to the resource (each ownership the table mentions, or none), system group (admin,
business, user, worker, none), organization role (owner ... worker, none) and, where a row
has a limit, the target's role, becomes one decision. The expected answer is computed here
from the table rows alone (allowed when some row matches; admins always), independently of
the policies, and compared with what the engine decides.

Matching rules (CVAT's generator semantics): a comma cell expands into one row per value;
"N/A" matches anything; ownership "None" needs no relation; the caller's group must be at
least the row's (admin > business > user > worker > none, business counting as user), or
exactly it when Strict_Privilege is set; the caller's organization role must be at least the
row's; the row's limit must hold.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cvat_ray.iam.engine import DEFAULT_RULES_DIR, PolicyEngine

TABLES = Path(__file__).parent / "permission_tables"
PRIVILEGES = ["admin", "business", "user", "worker", "none"]
RANK = {"admin": 4, "business": 3, "user": 2, "worker": 1, "none": 0}
ROLES = ["owner", "maintainer", "supervisor", "worker", "none"]
ROLE_RANK = {"owner": 4, "maintainer": 3, "supervisor": 2, "worker": 1, "none": 0}
USER, OTHER, ORG, OTHER_ORG = 1, 2, 10, 20

# Where each relation lives in the resource (CVAT's OPA input shape).
RELATION_PATHS = {
    "owner": ["owner"],
    "assignee": ["assignee"],
    "project:owner": ["project", "owner"],
    "project:assignee": ["project", "assignee"],
    "task:owner": ["task", "owner"],
    "task:assignee": ["task", "assignee"],
    "job:assignee": ["job", "assignee"],
    "issue:owner": ["issue", "owner"],
    "issue:assignee": ["issue", "assignee"],
    "target:owner": ["target", "owner"],
    "target:assignee": ["target", "assignee"],
    "invitee": ["invitee"],
    "self": None,  # the resource is the user (users) or their membership (memberships)
}
ORG_FREE = {"users", "server", "lambda", "events", "analytics", "organizations"}


def norm(value: str) -> str:
    return value.strip().lower().replace("n/a", "na")


def load(table: str) -> list[dict[str, Any]]:
    rows = []
    with (TABLES / f"{table}.csv").open() as fh:
        for raw in csv.DictReader(fh):
            rows.append(
                {
                    "scope": raw["Scope"].strip(),
                    "context": norm(raw["Context"]),
                    "ownership": {norm(x) for x in raw["Ownership"].split(",")},
                    "privilege": norm(raw["Privilege"]),
                    "membership": norm(raw["Membership"]),
                    "limit": (raw.get("Limit") or "").strip(),
                    "strict": (raw.get("Strict_Privilege") or "").strip().lower() == "true",
                    "analytics": (raw.get("HasAnalyticsAccess") or "").strip().lower() == "true",
                }
            )
    return rows


def limit_holds(limit: str, case: dict[str, Any]) -> bool:
    if not limit:
        return True
    if limit == 'resource["role"] != "owner"':
        return bool(case["target_role"] != "owner")
    if limit == 'resource["role"] not in ["maintainer", "owner"]':
        return case["target_role"] not in ("maintainer", "owner")
    if limit == 'resource["membership"]["role"] != None':
        return case["target_member"] is not None
    raise AssertionError(f"unknown limit {limit}")


def expected(rows: list[dict[str, Any]], case: dict[str, Any]) -> bool:
    if case["privilege"] == "admin":
        return True
    for row in rows:
        if row["scope"] != case["scope"]:
            continue
        if row["context"] not in ("na", case["context"]):
            continue
        if not row["ownership"] & {"na", "none", case["ownership"]}:
            continue
        if row["strict"]:
            if case["privilege"] != row["privilege"]:
                continue
        elif RANK[case["privilege"]] < RANK[row["privilege"]]:
            continue
        if (
            row["membership"] != "na"
            and ROLE_RANK[case["membership"]] < ROLE_RANK[row["membership"]]
        ):
            continue
        if not limit_holds(row["limit"], case):
            continue
        if row["analytics"] and not case["analytics"]:
            continue
        return True
    return False


def set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def policy_input(table: str, case: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = {"id": 100}
    # Everyone else related to the resource is another user.
    for path in RELATION_PATHS.values():
        if path:
            set_path(resource, path, {"id": OTHER})
    if table == "memberships":
        resource["user"] = {"id": OTHER}
    relation = case["ownership"]
    relation_path = RELATION_PATHS.get(relation)
    if relation_path:
        set_path(resource, relation_path, {"id": USER})
    elif relation == "self":
        if table == "memberships":
            resource["user"] = {"id": USER}
        else:
            resource["id"] = USER
    if case["target_role"] is not None:
        resource["role"] = case["target_role"]
    resource["membership"] = {"role": case["target_member"]}

    organization = None
    if table == "organizations":
        resource["id"] = ORG
        role = relation if relation in ROLE_RANK and relation != "none" else None
        organization = {"id": ORG, "user": {"role": role}}
        if relation == "owner":
            resource["owner"] = {"id": USER}
    elif case["context"] == "organization":
        role = None if case["membership"] == "none" else case["membership"]
        organization = {"id": ORG, "user": {"role": role}}
    if table not in ORG_FREE:
        resource["organization"] = {"id": ORG} if organization else None
    return {
        "scope": case["scope"],
        "auth": {
            "user": {
                "id": USER,
                "privilege": None if case["privilege"] == "none" else case["privilege"],
                "has_analytics_access": case["analytics"],
            },
            "organization": organization,
        },
        "resource": resource,
    }


def cases(table: str, rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    scopes = sorted({r["scope"] for r in rows})
    ownerships = sorted({o for r in rows for o in r["ownership"]} - {"na"} | {"none"})
    has_role_limit = any("role" in r["limit"] and "membership" not in r["limit"] for r in rows)
    has_member_limit = any('["membership"]' in r["limit"] for r in rows)
    contexts = ["na"] if table == "organizations" else ["sandbox", "organization"]
    for scope, context, ownership, privilege in itertools.product(
        scopes, contexts, ownerships, PRIVILEGES
    ):
        memberships = ROLES if context == "organization" else ["none"]
        for membership in memberships:
            for target_role in ROLES[:-1] if has_role_limit else [None]:
                for target_member in ["worker", None] if has_member_limit else ["worker"]:
                    for analytics in [True, False] if table == "analytics" else [False]:
                        yield {
                            "scope": scope,
                            "context": context,
                            "ownership": ownership,
                            "privilege": privilege,
                            "membership": membership,
                            "target_role": target_role,
                            "target_member": target_member,
                            "analytics": analytics,
                        }


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(DEFAULT_RULES_DIR)


TABLE_NAMES = sorted(p.stem for p in TABLES.glob("*.csv"))


def test_all_sixteen_tables_are_here() -> None:
    assert len(TABLE_NAMES) == 16


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_engine_follows_the_table(engine: PolicyEngine, table: str) -> None:
    rows = load(table)
    checked = allowed = 0
    mismatches = []
    for case in cases(table, rows):
        want = expected(rows, case)
        got = engine.allow(table, policy_input(table, case))
        checked += 1
        allowed += want
        if got != want:
            mismatches.append((case, want, got))
    assert checked > 0
    assert not mismatches, f"{len(mismatches)}/{checked} decisions differ, e.g. {mismatches[:3]}"
    # Every row of the table is reachable: some case is allowed by it.
    assert allowed > 0


def test_resources_of_another_organization_are_refused(engine: PolicyEngine) -> None:
    data: dict[str, Any] = {
        "scope": "view",
        "auth": {
            "user": {"id": USER, "privilege": "user", "has_analytics_access": False},
            "organization": {"id": ORG, "user": {"role": "owner"}},
        },
        "resource": {"id": 5, "owner": {"id": USER}, "organization": {"id": OTHER_ORG}},
    }
    assert engine.allow("tasks", data) is False
    data["resource"]["organization"] = {"id": ORG}
    assert engine.allow("tasks", data) is True


def test_business_has_at_least_user_rights(engine: PolicyEngine) -> None:
    for table in TABLE_NAMES:
        rows = load(table)
        for case in cases(table, rows):
            if case["privilege"] != "user":
                continue
            as_user = engine.allow(table, policy_input(table, case))
            as_business = engine.allow(
                table, policy_input(table, {**case, "privilege": "business"})
            )
            assert as_business or not as_user, (table, case)
