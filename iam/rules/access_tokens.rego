# Personal access tokens: a user manages only their own (admins included: a token is a secret
# of its owner). Not in CVAT's tables.

package access_tokens

import rego.v1

import data.utils

default allow := false

allow if input.scope in {"list", "create"}

allow if {
	input.scope in {"view", "update", "delete"}
	utils.is_user(input.resource.owner)
}

filter := utils.eq("owner_id")
