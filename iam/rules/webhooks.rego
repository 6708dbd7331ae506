# Webhooks (of an organization or of a project).
# Its rules are the rows of CVAT's permission table, in tables/webhooks.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package webhooks

import rego.v1

import data.utils

rules := data.tables.webhooks

relations contains "owner" if utils.is_user(input.resource.owner)

relations contains "project:owner" if utils.is_user(input.resource.project.owner)

default allow := false

allow if utils.allowed(rules, relations)

filter := utils.ALL if utils.is_admin
else := utils.ALL if {
	utils.is_organization
	utils.has_role("maintainer")
}
else := utils.any_of(["owner_id", "project.owner_id"])
