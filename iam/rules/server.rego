# Server information and the share.
# Its rules are the rows of CVAT's permission table, in tables/server.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package server

import rego.v1

import data.utils

rules := data.tables.server

relations := set()

default allow := false

allow if utils.allowed(rules, relations)
