# Projects.
# Its rules are the rows of CVAT's permission table, in tables/projects.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package projects

import rego.v1

import data.utils

rules := data.tables.projects

relations contains "owner" if utils.is_user(input.resource.owner)

relations contains "assignee" if utils.is_user(input.resource.assignee)

default allow := false

allow if utils.allowed(rules, relations)

filter := utils.staff_filter(["owner_id", "assignee_id"])
