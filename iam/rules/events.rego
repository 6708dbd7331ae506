# Analytics events (client events and CSV export).
# Its rules are the rows of CVAT's permission table, in tables/events.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package events

import rego.v1

import data.utils

rules := data.tables.events

relations := set()

default allow := false

allow if utils.allowed(rules, relations)
