# Server information and the share.
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/server.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package server

import rego.v1

import data.utils

rules := [
	{"scope": "view", "context": "na", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "list:content", "context": "na", "ownership": ["na"], "privilege": "user", "membership": "na"},
]

relations := set()

default allow := false

allow if utils.allowed(rules, relations)
