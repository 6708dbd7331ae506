# User accounts. Not related to organizations.
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/users.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package users

import rego.v1

import data.utils

rules := [
	{"scope": "list", "context": "sandbox", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "list", "context": "organization", "ownership": ["na"], "privilege": "none", "membership": "worker"},
	{"scope": "view", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "view", "context": "na", "ownership": ["self"], "privilege": "none", "membership": "na"},
	{"scope": "view", "context": "organization", "ownership": ["none"], "privilege": "none", "membership": "worker", "limit": "target_is_member"},
	{"scope": "update:email", "context": "na", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:permissions", "context": "na", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:personal_data", "context": "na", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:personal_data", "context": "na", "ownership": ["self"], "privilege": "none", "membership": "na"},
	{"scope": "delete", "context": "na", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "delete", "context": "na", "ownership": ["self"], "privilege": "none", "membership": "na"},
]

relations contains "self" if input.resource.id == input.auth.user.id

default allow := false

allow if utils.allowed(rules, relations)

# CVAT: admins list everyone, members of an organization list its members, others themselves.
filter := utils.ALL if utils.is_admin
else := {"op": "eq", "field": "memberships.organization_id", "value": input.auth.organization.id} if {
	utils.is_organization
}
else := utils.eq("id")
