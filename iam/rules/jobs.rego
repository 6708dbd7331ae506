# Jobs (annotation jobs of tasks).
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/jobs.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package jobs

import rego.v1

import data.utils

rules := [
	{"scope": "list", "context": "sandbox", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "list", "context": "organization", "ownership": ["na"], "privilege": "none", "membership": "worker"},
	{"scope": "view", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "view", "context": "sandbox", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "na"},
	{"scope": "view", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "view", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "view", "context": "organization", "ownership": ["assignee"], "privilege": "worker", "membership": "na", "strict": true},
	{"scope": "update:stage", "context": "sandbox", "ownership": ["assignee", "none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:stage", "context": "sandbox", "ownership": ["project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:stage", "context": "organization", "ownership": ["assignee", "none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:stage", "context": "organization", "ownership": ["project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "update:state", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:state", "context": "sandbox", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:state", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:state", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "update:state", "context": "organization", "ownership": ["assignee"], "privilege": "worker", "membership": "na", "strict": true},
	{"scope": "update:assignee", "context": "sandbox", "ownership": ["assignee", "none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:assignee", "context": "sandbox", "ownership": ["project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:assignee", "context": "organization", "ownership": ["assignee", "none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:assignee", "context": "organization", "ownership": ["project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "view:annotations", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "view:annotations", "context": "sandbox", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "na"},
	{"scope": "view:annotations", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "view:annotations", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "view:annotations", "context": "organization", "ownership": ["assignee"], "privilege": "worker", "membership": "na", "strict": true},
	{"scope": "export:annotations", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "export:annotations", "context": "sandbox", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "na"},
	{"scope": "export:annotations", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "export:annotations", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "supervisor"},
	{"scope": "export:annotations", "context": "organization", "ownership": ["project:owner", "task:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "export:dataset", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "export:dataset", "context": "sandbox", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "na"},
	{"scope": "export:dataset", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "export:dataset", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "supervisor"},
	{"scope": "export:dataset", "context": "organization", "ownership": ["project:owner", "task:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "update:annotations", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:annotations", "context": "sandbox", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:annotations", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:annotations", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "update:annotations", "context": "organization", "ownership": ["assignee"], "privilege": "worker", "membership": "na", "strict": true},
	{"scope": "delete:annotations", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "delete:annotations", "context": "sandbox", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "delete:annotations", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "delete:annotations", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "delete:annotations", "context": "organization", "ownership": ["assignee"], "privilege": "worker", "membership": "na", "strict": true},
	{"scope": "view:data", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "view:data", "context": "sandbox", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "na"},
	{"scope": "view:data", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "view:data", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "view:data", "context": "organization", "ownership": ["assignee"], "privilege": "worker", "membership": "na", "strict": true},
	{"scope": "view:metadata", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "view:metadata", "context": "sandbox", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "na"},
	{"scope": "view:metadata", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "view:metadata", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "view:metadata", "context": "organization", "ownership": ["assignee"], "privilege": "worker", "membership": "na", "strict": true},
	{"scope": "update:metadata", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:metadata", "context": "sandbox", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:metadata", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:metadata", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "update:metadata", "context": "organization", "ownership": ["assignee"], "privilege": "worker", "membership": "na", "strict": true},
	{"scope": "import:annotations", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "import:annotations", "context": "sandbox", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "import:annotations", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "import:annotations", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "import:annotations", "context": "organization", "ownership": ["assignee"], "privilege": "worker", "membership": "na", "strict": true},
	{"scope": "create", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "create", "context": "sandbox", "ownership": ["project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "user", "membership": "na"},
	{"scope": "create", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "create", "context": "organization", "ownership": ["project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "user", "membership": "supervisor"},
	{"scope": "create", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "user", "membership": "maintainer"},
	{"scope": "delete", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "delete", "context": "sandbox", "ownership": ["project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "user", "membership": "na"},
	{"scope": "delete", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "delete", "context": "organization", "ownership": ["project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "user", "membership": "supervisor"},
	{"scope": "delete", "context": "organization", "ownership": ["assignee", "project:assignee", "project:owner", "task:assignee", "task:owner"], "privilege": "user", "membership": "maintainer"},
]

relations contains "assignee" if utils.is_user(input.resource.assignee)

relations contains "task:owner" if utils.is_user(input.resource.task.owner)

relations contains "task:assignee" if utils.is_user(input.resource.task.assignee)

relations contains "project:owner" if utils.is_user(input.resource.project.owner)

relations contains "project:assignee" if utils.is_user(input.resource.project.assignee)

default allow := false

allow if utils.allowed(rules, relations)

filter := utils.staff_filter([
	"assignee_id", "task.owner_id", "task.assignee_id", "project.owner_id", "project.assignee_id",
])
