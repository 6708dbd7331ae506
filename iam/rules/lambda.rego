# Models (lambda functions) and their online calls.
# Its rules are the rows of CVAT's permission table, in tables/lambda.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package lambda

import rego.v1

import data.utils

rules := data.tables.lambda

relations := set()

default allow := false

allow if utils.allowed(rules, relations)
