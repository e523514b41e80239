"""``bare-veth``: bare, with a service's server in a network namespace of its own on the
suite's bridge (a veth on vmvc0, an address leased), reached from the host the way the
containers' servers are. Everything else is bare's. It answers one question: how much of a
container's service cost is its network path (veth and bridge) rather than its isolation.
bare itself serves on a loopback (the host's path); see README's "The suite's network"."""

from bench.backends import netns
from bench.backends.bare import BareBackend
from bench.backends.netns import BridgedNetns


class BareVethBackend(BareBackend):
    name = "bare-veth"
    default = False  # a variant for one question, run when named

    def own_network(self, instance_id: str) -> BridgedNetns:
        return netns.make(instance_id)
