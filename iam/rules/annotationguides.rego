# Annotation guides of tasks and projects (the target).
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/annotationguides.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package annotationguides

import rego.v1

import data.utils

rules := [
	{"scope": "view", "context": "sandbox", "ownership": ["target:assignee", "target:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "view", "context": "sandbox", "ownership": ["job:assignee"], "privilege": "worker", "membership": "na"},
	{"scope": "view", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "maintainer"},
	{"scope": "view", "context": "organization", "ownership": ["target:assignee", "target:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "view", "context": "organization", "ownership": ["job:assignee"], "privilege": "worker", "membership": "worker"},
	{"scope": "view", "context": "na", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "create", "context": "sandbox", "ownership": ["target:assignee", "target:owner"], "privilege": "user", "membership": "na"},
	{"scope": "create", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "maintainer"},
	{"scope": "create", "context": "organization", "ownership": ["target:assignee", "target:owner"], "privilege": "user", "membership": "worker"},
	{"scope": "create", "context": "na", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "update", "context": "sandbox", "ownership": ["target:assignee", "target:owner"], "privilege": "user", "membership": "na"},
	{"scope": "update", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "maintainer"},
	{"scope": "update", "context": "organization", "ownership": ["target:assignee", "target:owner"], "privilege": "user", "membership": "worker"},
	{"scope": "update", "context": "na", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "delete", "context": "sandbox", "ownership": ["target:assignee", "target:owner"], "privilege": "user", "membership": "na"},
	{"scope": "delete", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "maintainer"},
	{"scope": "delete", "context": "organization", "ownership": ["target:assignee", "target:owner"], "privilege": "user", "membership": "worker"},
	{"scope": "delete", "context": "na", "ownership": ["na"], "privilege": "admin", "membership": "na"},
]

relations contains "target:owner" if utils.is_user(input.resource.target.owner)

relations contains "target:assignee" if utils.is_user(input.resource.target.assignee)

relations contains "job:assignee" if utils.is_user(input.resource.job.assignee)

default allow := false

allow if utils.allowed(rules, relations)
