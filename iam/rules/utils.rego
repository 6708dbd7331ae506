# Shared vocabulary and the table matcher used by every policy package.
#
# Input (built by iam/authz.py):
#   scope     the action, e.g. "view", "update:desc", "create@project"
#   auth      {"user": {"id", "privilege", "has_analytics_access"},
#              "organization": {"id", "user": {"role"}} or null}   (null = sandbox)
#   resource  the object, in CVAT's shape: {"id", "owner": {"id"}, "assignee": {"id"},
#              "organization": {"id"} or null, "project": {...}, "task": {...}, ...}
#
# A package lists its rules as rows of CVAT's permission tables, keyed by scope:
#   {"<scope>": [{"context": sandbox|organization|na, "ownership": [relations or "na"/"none"],
#    "privilege": admin|business|user|worker|none, "membership": owner|maintainer|supervisor|worker|na,
#    optional "limit", "strict" (privilege must match exactly), "analytics"}, ...], ...}
# and defines `relations`, the caller's relations to the resource ("owner", "project:assignee", ...).
# A request is allowed when the caller is an admin, or when some row of its scope matches:
# context fits, one of the row's relations holds ("na" and "none" require none), the system group
# is at least the row's (business counts as user), the organization role is at least the row's,
# and the row's limit holds. In an organization the resource must belong to that organization.

package utils

import rego.v1

PRIVILEGES := {"admin": 4, "business": 3, "user": 2, "worker": 1, "none": 0}

ROLES := {"owner": 4, "maintainer": 3, "supervisor": 2, "worker": 1}

privilege := p if {
	p := input.auth.user.privilege
	p in object.keys(PRIVILEGES)
} else := "none"

org_role := r if {
	r := input.auth.organization.user.role
	r in object.keys(ROLES)
} else := "none"

is_admin if input.auth.user.privilege == "admin"

is_sandbox if input.auth.organization == null

is_sandbox if not input.auth.organization

is_organization if input.auth.organization.id != null

is_member if org_role != "none"

has_perm(p) if PRIVILEGES[privilege] >= PRIVILEGES[p]

has_role(r) if {
	is_member
	ROLES[org_role] >= ROLES[r]
}

is_user(obj) if obj.id == input.auth.user.id

context_ok(c) if c == "na"

context_ok(c) if {
	c == "sandbox"
	is_sandbox
}

context_ok(c) if {
	c == "organization"
	is_organization
}

ownership_ok(own, _) if "na" in own

ownership_ok(own, _) if "none" in own

ownership_ok(own, relations) if {
	some r in own
	r in relations
}

privilege_ok(rule) if {
	not rule.strict
	has_perm(rule.privilege)
}

privilege_ok(rule) if {
	rule.strict
	privilege == rule.privilege
}

membership_ok(m) if m == "na"

membership_ok(m) if has_role(m)

limit_ok(rule) if not rule.limit

limit_ok(rule) if {
	rule.limit == "role_not_owner"
	input.resource.role != "owner"
}

limit_ok(rule) if {
	rule.limit == "role_below_maintainer"
	not input.resource.role in {"maintainer", "owner"}
}

limit_ok(rule) if {
	rule.limit == "target_is_member"
	input.resource.membership.role != null
}

analytics_ok(rule) if not rule.analytics

analytics_ok(rule) if {
	rule.analytics
	input.auth.user.has_analytics_access == true
}

# In an organization, an organization's resource must be one of its own.
same_org if is_sandbox

same_org if {
	is_organization
	not "organization" in object.keys(object.get(input, "resource", {}))
}

same_org if input.resource.organization.id == input.auth.organization.id

allowed(_, _) if is_admin

allowed(rules, relations) if {
	same_org
	some rule in rules[input.scope]
	context_ok(rule.context)
	ownership_ok(rule.ownership, relations)
	privilege_ok(rule)
	membership_ok(rule.membership)
	limit_ok(rule)
	analytics_ok(rule)
}

# ---- list filters ----------------------------------------------------------------------
# A filter is a small expression the server compiles to SQL:
#   {"op": "all"} | {"op": "none"} | {"op": "eq", "field": F, "value": V}
#   | {"op": "or", "items": [...]} | {"op": "and", "items": [...]}
# Field names are the policy paths each list query declares (owner_id, project.owner_id, ...).
# Restricting a list to the organization of the request is done by the server for every list,
# as CVAT's organization filter backend does; policies add who may see what inside it.

ALL := {"op": "all"}

eq(field) := {"op": "eq", "field": field, "value": input.auth.user.id}

any_of(fields) := {"op": "or", "items": [eq(f) | some f in fields]}

# Everything for admins and for organization maintainers (with a user's rights), else the
# rows the caller owns or is assigned to.
staff_filter(fields) := ALL if is_admin
else := ALL if {
	is_organization
	has_perm("user")
	has_role("maintainer")
}
else := any_of(fields)
