# Analytics events (client events and CSV export).
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/events.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package events

import rego.v1

import data.utils

rules := [
	{"scope": "send:events", "context": "na", "ownership": ["na"], "privilege": "none", "membership": "na"},
	{"scope": "dump:events", "context": "sandbox", "ownership": ["na"], "privilege": "worker", "membership": "na"},
	{"scope": "dump:events", "context": "organization", "ownership": ["na"], "privilege": "worker", "membership": "worker"},
]

relations := set()

default allow := false

allow if utils.allowed(rules, relations)
