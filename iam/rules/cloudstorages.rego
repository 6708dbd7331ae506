# Cloud storages.
# Its rules are the rows of CVAT's permission table, in tables/cloudstorages.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package cloudstorages

import rego.v1

import data.utils

rules := data.tables.cloudstorages

relations contains "owner" if utils.is_user(input.resource.owner)

default allow := false

allow if utils.allowed(rules, relations)

# Supervisors see every storage of their organization (they may attach them to tasks).
filter := utils.ALL if utils.is_admin
else := utils.ALL if {
	utils.is_organization
	utils.has_perm("user")
	utils.has_role("supervisor")
}
else := utils.any_of(["owner_id"])
