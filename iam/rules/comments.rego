# Comments on issues.
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/comments.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package comments

import rego.v1

import data.utils

rules := [
	{"scope": "list", "context": "sandbox", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "list", "context": "organization", "ownership": ["na"], "privilege": "none", "membership": "worker"},
	{"scope": "create@issue", "context": "sandbox", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "create@issue", "context": "sandbox", "ownership": ["issue:assignee", "issue:owner", "job:assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "create@issue", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "maintainer"},
	{"scope": "create@issue", "context": "organization", "ownership": ["issue:assignee", "issue:owner", "job:assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "view", "context": "sandbox", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "view", "context": "sandbox", "ownership": ["issue:assignee", "issue:owner", "job:assignee", "owner", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "na"},
	{"scope": "view", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "view", "context": "organization", "ownership": ["issue:assignee", "issue:owner", "job:assignee", "owner", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "update", "context": "sandbox", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "update", "context": "sandbox", "ownership": ["issue:assignee", "issue:owner", "job:assignee", "owner", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update", "context": "organization", "ownership": ["issue:assignee", "issue:owner", "job:assignee", "owner", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "delete", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "delete", "context": "sandbox", "ownership": ["issue:assignee", "issue:owner", "job:assignee", "owner", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "delete", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "delete", "context": "organization", "ownership": ["issue:assignee", "issue:owner", "job:assignee", "owner", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
]

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
