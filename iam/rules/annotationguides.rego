# Annotation guides of tasks and projects (the target).
# Its rules are the rows of CVAT's permission table, in tables/annotationguides.json (keyed by scope);
# edit them there to change who may do what. See utils.rego for how rows are matched.

package annotationguides

import rego.v1

import data.utils

rules := data.tables.annotationguides

relations contains "target:owner" if utils.is_user(input.resource.target.owner)

relations contains "target:assignee" if utils.is_user(input.resource.target.assignee)

relations contains "job:assignee" if utils.is_user(input.resource.job.assignee)

default allow := false

allow if utils.allowed(rules, relations)
