# Background requests (imports, exports, backups, task creation): only their owner sees them.
# Not in CVAT's tables; CVAT's requests policy gives the same answer.

package requests

import rego.v1

import data.utils

default allow := false

allow if utils.is_admin

allow if input.scope == "list"

allow if {
	input.scope in {"view", "cancel"}
	utils.is_user(input.resource.owner)
}

filter := utils.eq("owner_id")
