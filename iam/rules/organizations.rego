# Organizations. The caller's relation is their role in the organization.
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/organizations.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package organizations

import rego.v1

import data.utils

rules := [
	{"scope": "create", "context": "na", "ownership": ["na"], "privilege": "user", "membership": "na"},
	{"scope": "list", "context": "na", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "view", "context": "na", "ownership": ["maintainer", "owner", "supervisor", "worker"], "privilege": "none", "membership": "na"},
	{"scope": "view", "context": "na", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update", "context": "na", "ownership": ["maintainer", "owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update", "context": "na", "ownership": ["none", "supervisor", "worker"], "privilege": "admin", "membership": "na"},
	{"scope": "delete", "context": "na", "ownership": ["owner"], "privilege": "worker", "membership": "na"},
	{"scope": "delete", "context": "na", "ownership": ["maintainer", "none", "supervisor", "worker"], "privilege": "admin", "membership": "na"},
]

relations contains "owner" if utils.is_user(input.resource.owner)

relations contains role if {
	input.resource.id == input.auth.organization.id
	role := utils.org_role
	role != "none"
}

default allow := false

allow if utils.allowed(rules, relations)

filter := utils.ALL if utils.is_admin
else := {"op": "or", "items": [utils.eq("owner_id"), utils.eq("memberships.user_id")]}
