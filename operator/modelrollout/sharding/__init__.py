"""Sharded operators: N replicas, each acting on a disjoint share of the ModelRollouts.

A rollout's shard is a stable hash of its namespace and name (`shard_of`), written on the
ModelRollout and on what the operator creates for it as two labels (`modelrollout.io/shard`,
`modelrollout.io/shards`), so that each replica's watches carry a server-side label selector and
shrink with N. Each shard is held by a Lease in the operator's namespace; a replica runs one kopf
operator per shard it holds (`supervisor`), so that losing a shard stops exactly its rollouts and a
dead replica's shard is taken over once its Lease expires. `plan` decides, with no I/O, which
Leases a replica acquires, renews and releases.
"""
