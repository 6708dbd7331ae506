# The analytics dashboards.
# The rule rows are CVAT's permission table for this resource (tests/iam/permission_tables/analytics.csv);
# edit them here to change who may do what. See utils.rego for how rows are matched.

package analytics

import rego.v1

import data.utils

rules := [
	{"scope": "view", "context": "na", "ownership": ["na"], "privilege": "none", "membership": "na", "analytics": true},
]

relations := set()

default allow := false

allow if utils.allowed(rules, relations)
