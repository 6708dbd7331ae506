# Organizations. The caller's relation is their role in the organization.
# Its rules are the rows of CVAT's permission table, in tables/organizations.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package organizations

import rego.v1

import data.utils

rules := data.tables.organizations

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
