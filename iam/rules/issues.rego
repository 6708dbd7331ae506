# Review issues of jobs.
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/issues.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package issues

import rego.v1

import data.utils

rules := [
	{"scope": "list", "context": "sandbox", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "list", "context": "organization", "ownership": ["na"], "privilege": "none", "membership": "worker"},
	{"scope": "create@job", "context": "sandbox", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "create@job", "context": "sandbox", "ownership": ["job:assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "create@job", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "maintainer"},
	{"scope": "create@job", "context": "organization", "ownership": ["job:assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "view", "context": "sandbox", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "view", "context": "sandbox", "ownership": ["assignee", "job:assignee", "owner", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "na"},
	{"scope": "view", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "maintainer"},
	{"scope": "view", "context": "organization", "ownership": ["assignee", "job:assignee", "owner", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "update", "context": "sandbox", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "update", "context": "sandbox", "ownership": ["assignee", "job:assignee", "owner", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update", "context": "organization", "ownership": ["assignee", "job:assignee", "owner", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "delete", "context": "sandbox", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "delete", "context": "sandbox", "ownership": ["owner", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "delete", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "maintainer"},
	{"scope": "delete", "context": "organization", "ownership": ["owner", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
]

relations contains "owner" if utils.is_user(input.resource.owner)

relations contains "assignee" if utils.is_user(input.resource.assignee)

relations contains "job:assignee" if utils.is_user(input.resource.job.assignee)

relations contains "task:owner" if utils.is_user(input.resource.task.owner)

relations contains "task:assignee" if utils.is_user(input.resource.task.assignee)

relations contains "project:owner" if utils.is_user(input.resource.project.owner)

relations contains "project:assignee" if utils.is_user(input.resource.project.assignee)

default allow := false

allow if utils.allowed(rules, relations)

filter := utils.staff_filter([
	"owner_id", "assignee_id", "job.assignee_id", "task.owner_id", "task.assignee_id",
	"project.owner_id", "project.assignee_id",
])
