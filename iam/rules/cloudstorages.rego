# Cloud storages.
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/cloudstorages.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package cloudstorages

import rego.v1

import data.utils

rules := [
	{"scope": "create", "context": "sandbox", "ownership": ["na"], "privilege": "user", "membership": "na"},
	{"scope": "create", "context": "organization", "ownership": ["na"], "privilege": "user", "membership": "maintainer"},
	{"scope": "list", "context": "sandbox", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "list", "context": "organization", "ownership": ["na"], "privilege": "none", "membership": "worker"},
	{"scope": "view", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "view", "context": "sandbox", "ownership": ["owner"], "privilege": "none", "membership": "na"},
	{"scope": "view", "context": "organization", "ownership": ["owner"], "privilege": "none", "membership": "worker"},
	{"scope": "view", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "supervisor"},
	{"scope": "update", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "update", "context": "sandbox", "ownership": ["owner"], "privilege": "worker", "membership": "na"},
	{"scope": "update", "context": "organization", "ownership": ["owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "update", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "delete", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "delete", "context": "sandbox", "ownership": ["owner"], "privilege": "worker", "membership": "na"},
	{"scope": "delete", "context": "organization", "ownership": ["owner"], "privilege": "worker", "membership": "worker"},
	{"scope": "delete", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "maintainer"},
	{"scope": "list:content", "context": "sandbox", "ownership": ["none"], "privilege": "admin", "membership": "na"},
	{"scope": "list:content", "context": "sandbox", "ownership": ["owner"], "privilege": "none", "membership": "na"},
	{"scope": "list:content", "context": "organization", "ownership": ["owner"], "privilege": "none", "membership": "worker"},
	{"scope": "list:content", "context": "organization", "ownership": ["none"], "privilege": "user", "membership": "supervisor"},
]

relations contains "owner" if utils.is_user(input.resource.owner)

default allow := false

allow if utils.allowed(rules, relations)

# Supervisors see every storage of their organization (they may attach them to tasks).
filter := utils.ALL if utils.is_admin
else := utils.ALL if {
	utils.is_organization
	utils.has_perm("user")
	utils.has_role("supervisor")
}
else := utils.any_of(["owner_id"])
