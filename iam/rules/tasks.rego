# Tasks.
# Its rules are the rows of CVAT's permission table, in tables/tasks.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package tasks

import rego.v1

import data.utils

rules := data.tables.tasks

relations contains "owner" if utils.is_user(input.resource.owner)

relations contains "assignee" if utils.is_user(input.resource.assignee)

relations contains "project:owner" if utils.is_user(input.resource.project.owner)

relations contains "project:assignee" if utils.is_user(input.resource.project.assignee)

default allow := false

allow if utils.allowed(rules, relations)

filter := utils.staff_filter(["owner_id", "assignee_id", "project.owner_id", "project.assignee_id"])
