# Invitations to join an organization.
# Its rules are the rows of CVAT's permission table, in tables/invitations.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package invitations

import rego.v1

import data.utils

rules := data.tables.invitations

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
