# Consul ACL policy for confab nodes: the least a node needs. Every node of
# a cluster may share one token holding only this policy.
#
#   consul acl policy create -name confab -rules @deploy/consul-acl-policy.hcl
#   consul acl token create -description "confab" -policy-name confab
#
# Give the token's SecretID to each node in a file (--consul-token-file) or
# in $CONFAB_CONSUL_TOKEN. docs/cluster.md explains each rule.

# The node directory and the room and producer records live under confab/:
# a node lists them (one-shot and blocking reads), acquires its own records
# with its session (single writes and transactions) and deletes records of
# an earlier life of itself.
key_prefix "confab/" {
  policy = "write"
}

# Each node registers (and on shutdown deregisters) the service "confab"
# with an HTTP check of its /healthz, puts it into maintenance mode while
# draining, and watches the health of every node's instance.
service "confab" {
  policy = "write"
}

# Health answers list a service instance only when the token may read the
# Consul node it runs on.
node_prefix "" {
  policy = "read"
}

# A node's session (TTL, behavior delete) ties its KV records to its life:
# it creates, renews and destroys it, and lists sessions to destroy the
# ones an earlier life of itself left behind. Sessions belong to the Consul
# node of the agent confab talks to; to narrow this rule, replace it by one
# `session "<agent node name>" { policy = "write" }` per agent.
session_prefix "" {
  policy = "write"
}
