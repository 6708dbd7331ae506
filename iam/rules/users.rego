# User accounts. Not related to organizations.
# Its rules are the rows of CVAT's permission table, in tables/users.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package users

import rego.v1

import data.utils

rules := data.tables.users

relations contains "self" if input.resource.id == input.auth.user.id

default allow := false

allow if utils.allowed(rules, relations)

# CVAT: admins list everyone, members of an organization list its members, others themselves.
filter := utils.ALL if utils.is_admin
else := {"op": "eq", "field": "memberships.organization_id", "value": input.auth.organization.id} if {
	utils.is_organization
}
else := utils.eq("id")
