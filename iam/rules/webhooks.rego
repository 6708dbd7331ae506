# Webhooks (of an organization or of a project).
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/webhooks.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package webhooks

import rego.v1

import data.utils

rules := [
	{"scope": "create@project", "context": "sandbox", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "create@project", "context": "sandbox", "ownership": ["project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "create@project", "context": "organization", "ownership": ["na"], "privilege": "worker", "membership": "maintainer"},
	{"scope": "create@project", "context": "organization", "ownership": ["project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "create@organization", "context": "organization", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "create@organization", "context": "organization", "ownership": ["na"], "privilege": "worker", "membership": "maintainer"},
	{"scope": "update", "context": "sandbox", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "update", "context": "sandbox", "ownership": ["owner", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update", "context": "organization", "ownership": ["na"], "privilege": "worker", "membership": "maintainer"},
	{"scope": "update", "context": "organization", "ownership": ["owner", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "delete", "context": "sandbox", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "delete", "context": "sandbox", "ownership": ["owner", "project:owner"], "privilege": "worker", "membership": "na"},
	{"scope": "delete", "context": "organization", "ownership": ["na"], "privilege": "worker", "membership": "maintainer"},
	{"scope": "delete", "context": "organization", "ownership": ["owner", "project:owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "view", "context": "sandbox", "ownership": ["na"], "privilege": "admin", "membership": "na"},
	{"scope": "view", "context": "sandbox", "ownership": ["owner", "project:owner"], "privilege": "none", "membership": "na"},
	{"scope": "view", "context": "organization", "ownership": ["na"], "privilege": "worker", "membership": "maintainer"},
	{"scope": "view", "context": "organization", "ownership": ["owner", "project:owner"], "privilege": "none", "membership": "worker"},
	{"scope": "list", "context": "sandbox", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "list", "context": "organization", "ownership": ["na"], "privilege": "none", "membership": "worker"},
]

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
