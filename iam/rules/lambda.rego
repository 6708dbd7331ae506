# Models (lambda functions) and their online calls.
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/lambda.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package lambda

import rego.v1

import data.utils

rules := [
	{"scope": "list", "context": "na", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "view", "context": "na", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "call:online", "context": "na", "ownership": ["na"], "privilege": "worker", "membership": "na"},
]

relations := set()

default allow := false

allow if utils.allowed(rules, relations)
