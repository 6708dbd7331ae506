# Memberships of users in organizations.
# Its rules are the rows of CVAT's permission table, in tables/memberships.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package memberships

import rego.v1

import data.utils

rules := data.tables.memberships

relations contains "self" if utils.is_user(input.resource.user)

default allow := false

allow if utils.allowed(rules, relations)

filter := utils.ALL if utils.is_admin
else := utils.ALL if utils.is_organization
else := utils.eq("user_id")
