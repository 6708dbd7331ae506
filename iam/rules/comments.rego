# Comments on issues.
# Its rules are the rows of CVAT's permission table, in tables/comments.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package comments

import rego.v1

import data.utils

rules := data.tables.comments

relations contains "owner" if utils.is_user(input.resource.owner)

relations contains "issue:owner" if utils.is_user(input.resource.issue.owner)

relations contains "issue:assignee" if utils.is_user(input.resource.issue.assignee)

relations contains "job:assignee" if utils.is_user(input.resource.job.assignee)

relations contains "task:owner" if utils.is_user(input.resource.task.owner)

relations contains "task:assignee" if utils.is_user(input.resource.task.assignee)

relations contains "project:owner" if utils.is_user(input.resource.project.owner)

relations contains "project:assignee" if utils.is_user(input.resource.project.assignee)

default allow := false

allow if utils.allowed(rules, relations)

filter := utils.staff_filter([
	"owner_id", "issue.owner_id", "issue.assignee_id", "job.assignee_id", "task.owner_id",
	"task.assignee_id", "project.owner_id", "project.assignee_id",
])
