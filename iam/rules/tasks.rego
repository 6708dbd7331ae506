# Tasks.
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/tasks.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package tasks

import rego.v1

import data.utils

rules := [
	{"scope": "create", "context": "sandbox", "ownership": ["none"], "privilege": "user", "membership": "na"},
	{"scope": "create", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "supervisor"},
	{"scope": "import:backup", "context": "sandbox", "ownership": ["none"], "privilege": "user", "membership": "na"},
	{"scope": "import:backup", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "supervisor"},
	{"scope": "create@project", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "create@project", "context": "sandbox", "ownership": ["project:assignee", "project:owner"], "privilege": "user", "membership": "na"},
	{"scope": "create@project", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "supervisor"},
	{"scope": "create@project", "context": "organization", "ownership": ["project:assignee", "project:owner"], "privilege": "user", "membership": "worker"},
	{"scope": "view", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "view", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "na"},
	{"scope": "view", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "view", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "list", "context": "sandbox", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "list", "context": "organization", "ownership": ["na"], "privilege": "none", "membership": "worker"},
	{"scope": "update:desc", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:desc", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:desc", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:desc", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "update:owner", "context": "sandbox", "ownership": ["assignee", "none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:owner", "context": "sandbox", "ownership": ["owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:owner", "context": "organization", "ownership": ["assignee", "none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:owner", "context": "organization", "ownership": ["owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "update:assignee", "context": "sandbox", "ownership": ["assignee", "none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:assignee", "context": "sandbox", "ownership": ["owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:assignee", "context": "organization", "ownership": ["assignee", "none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:assignee", "context": "organization", "ownership": ["owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "update:project", "context": "sandbox", "ownership": ["assignee", "none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:project", "context": "sandbox", "ownership": ["owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:project", "context": "organization", "ownership": ["assignee", "none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:project", "context": "organization", "ownership": ["owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "update:associated_storage", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:associated_storage", "context": "sandbox", "ownership": ["owner", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:associated_storage", "context": "organization", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:associated_storage", "context": "organization", "ownership": ["assignee", "none", "project:assignee"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:associated_storage", "context": "organization", "ownership": ["owner", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "delete", "context": "sandbox", "ownership": ["assignee", "none"], "privilege": "admin", "membership": "na"},
	{"scope": "delete", "context": "sandbox", "ownership": ["owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "delete", "context": "organization", "ownership": ["assignee", "none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "delete", "context": "organization", "ownership": ["owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "view:annotations", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "view:annotations", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "na"},
	{"scope": "view:annotations", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "view:annotations", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "update:annotations", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:annotations", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:annotations", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:annotations", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "delete:annotations", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "delete:annotations", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "delete:annotations", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "delete:annotations", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "export:dataset", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "export:dataset", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "na"},
	{"scope": "export:dataset", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "export:dataset", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "supervisor"},
	{"scope": "export:dataset", "context": "organization", "ownership": ["owner", "project:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "view:data", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "view:data", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "na"},
	{"scope": "view:data", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "view:data", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "view:metadata", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "view:metadata", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "na"},
	{"scope": "view:metadata", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "view:metadata", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "update:metadata", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:metadata", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:metadata", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:metadata", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "upload:data", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "upload:data", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "upload:data", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "upload:data", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "import:annotations", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "import:annotations", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "import:annotations", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "import:annotations", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "export:annotations", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "export:annotations", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "na"},
	{"scope": "export:annotations", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "export:annotations", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "supervisor"},
	{"scope": "export:annotations", "context": "organization", "ownership": ["owner", "project:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "export:backup", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "export:backup", "context": "sandbox", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "na"},
	{"scope": "export:backup", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "export:backup", "context": "organization", "ownership": ["assignee", "owner", "project:assignee", "project:owner"], "privilege": "none", "membership": "supervisor"},
	{"scope": "export:backup", "context": "organization", "ownership": ["owner", "project:owner"], "privilege": "none", "membership": "worker"},
	# Our extension (CVAT's policies have it, its tables do not): moving to another
	# workspace needs the same rights as deleting.
	{"scope": "update:organization", "context": "sandbox", "ownership": ["assignee", "none"], "privilege": "admin", "membership": "na"},
	{"scope": "update:organization", "context": "sandbox", "ownership": ["owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update:organization", "context": "organization", "ownership": ["assignee", "none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update:organization", "context": "organization", "ownership": ["owner", "project:assignee", "project:owner"], "privilege": "worker", "membership": "worker"},
]

relations contains "owner" if utils.is_user(input.resource.owner)

relations contains "assignee" if utils.is_user(input.resource.assignee)

relations contains "project:owner" if utils.is_user(input.resource.project.owner)

relations contains "project:assignee" if utils.is_user(input.resource.project.assignee)

default allow := false

allow if utils.allowed(rules, relations)

filter := utils.staff_filter(["owner_id", "assignee_id", "project.owner_id", "project.assignee_id"])
