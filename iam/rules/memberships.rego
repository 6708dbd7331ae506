# Memberships of users in organizations.
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/memberships.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package memberships

import rego.v1

import data.utils

rules := [
	{"scope": "list", "context": "sandbox", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "list", "context": "organization", "ownership": ["na"], "privilege": "none", "membership": "worker"},
	{"scope": "view", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "view", "context": "sandbox", "ownership": ["self"], "privilege": "none", "membership": "na"},
	{"scope": "view", "context": "organization", "ownership": ["none", "self"], "privilege": "none", "membership": "worker"},
	{"scope": "change:role", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "owner", "limit": "role_not_owner"},
	{"scope": "change:role", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer", "limit": "role_below_maintainer"},
	{"scope": "delete", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "owner", "limit": "role_not_owner"},
	{"scope": "delete", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer", "limit": "role_below_maintainer"},
	{"scope": "delete", "context": "organization", "ownership": ["self"], "privilege": "worker", "membership": "worker", "limit": "role_not_owner"},
]

relations contains "self" if utils.is_user(input.resource.user)

default allow := false

allow if utils.allowed(rules, relations)

filter := utils.ALL if utils.is_admin
else := utils.ALL if utils.is_organization
else := utils.eq("user_id")
