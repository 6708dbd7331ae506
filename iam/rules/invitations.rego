# Invitations to join an organization.
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/invitations.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package invitations

import rego.v1

import data.utils

rules := [
	{"scope": "list", "context": "sandbox", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "list", "context": "organization", "ownership": ["na"], "privilege": "none", "membership": "worker"},
	{"scope": "create", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "maintainer", "limit": "role_below_maintainer"},
	{"scope": "create", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "owner", "limit": "role_not_owner"},
	{"scope": "view", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "view", "context": "na", "ownership": ["invitee", "owner"], "privilege": "none", "membership": "na"},
	{"scope": "view", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "resend", "context": "sandbox", "ownership": ["invitee", "none"], "privilege": "admin", "membership": "na"},
	{"scope": "resend", "context": "na", "ownership": ["owner"], "privilege": "worker", "membership": "na"},
	{"scope": "resend", "context": "organization", "ownership": ["invitee", "none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "delete", "context": "sandbox", "ownership": ["invitee", "none"], "privilege": "admin", "membership": "na"},
	{"scope": "delete", "context": "na", "ownership": ["owner"], "privilege": "worker", "membership": "na"},
	{"scope": "delete", "context": "organization", "ownership": ["invitee", "none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "accept", "context": "na", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "accept", "context": "na", "ownership": ["invitee"], "privilege": "none", "membership": "na"},
]

relations contains "owner" if utils.is_user(input.resource.owner)

relations contains "invitee" if utils.is_user(input.resource.invitee)

default allow := false

allow if utils.allowed(rules, relations)

filter := utils.ALL if utils.is_admin
else := utils.ALL if {
	utils.is_organization
	utils.has_perm("user")
	utils.has_role("maintainer")
}
else := utils.any_of(["owner_id", "invitee_id"])
