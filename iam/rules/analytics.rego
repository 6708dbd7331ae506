# The analytics dashboards.
# Its rules are the rows of CVAT's permission table, in tables/analytics.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package analytics

import rego.v1

import data.utils

rules := data.tables.analytics

relations := set()

default allow := false

allow if utils.allowed(rules, relations)
