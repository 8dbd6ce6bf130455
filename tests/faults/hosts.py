"""Several hosts on one LAN, made of Linux network namespaces: N host namespaces, each with one
interface `eth0` at 10.`subnet`.0.N/24, cabled by a veth pair to a bridge that lives in a
namespace of its own (the switch). Nothing is added to the namespace this process started in.

A host is cut off by taking its cable's switch end down: the host sees its carrier go, and
every packet to or from it is dropped without an answer, as when a cable is pulled. `restore`
plugs it back. `exec_prefix(host)` runs a command on a host; `inside(host)` moves the calling
thread there for a while (its sockets then belong to that host), so a test can act as one more
machine on the LAN.

Namespaces are named `hdrf-<pid>-<host>` like those of `netns.Pair`, so that the leftovers of a
killed run are deleted by the next one (`netns.remove_leftovers`). Needs root; `Lan.create`
raises NetnsUnavailable with the kernel's answer when namespaces cannot be made.

Imports only the stdlib and `tests.faults.netns`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from tests.faults.netns import (
    PREFIX,
    NetnsUnavailable,
    enter_netns,
    ip,
    remove_leftovers,
    setns,
)

SWITCH = "switch"
BRIDGE = "br0"
HOST_DEVICE = "eth0"


@dataclass(frozen=True)
class Host:
    name: str
    #: the network namespace the host is
    ns: str
    address: str
    #: the switch's end of the host's cable, in the switch namespace
    port: str


@dataclass
class Lan:
    """Hosts by name, on one bridge; `with Lan.create([...]) as lan:` deletes it all at the end."""

    switch: str
    hosts: dict[str, Host] = field(default_factory=dict)
    #: hosts whose cable is unplugged now
    cut_off: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, names: Sequence[str], subnet: int = 252) -> Lan:
        """Hosts `names` at 10.`subnet`.0.1, .2, ... in that order."""
        if len(set(names)) != len(names) or not 0 < len(names) < 254:
            raise ValueError(f"host names must be distinct, 1 to 253 of them: {list(names)}")
        if any(not n.isalnum() for n in names):
            raise ValueError(f"host names are letters and digits only: {list(names)}")
        remove_leftovers()
        pid = os.getpid()
        switch = f"{PREFIX}-{pid}-{SWITCH}"
        made = ip("netns", "add", switch, check=False)
        if made.returncode != 0:
            raise NetnsUnavailable(f"ip netns add: {made.stderr.strip()}")
        lan = cls(switch)
        try:
            ip("-n", switch, "link", "add", BRIDGE, "type", "bridge")
            ip("-n", switch, "link", "set", BRIDGE, "up")
            for number, name in enumerate(names, start=1):
                lan._plug(name, f"10.{subnet}.0.{number}", f"p{number}")
        except BaseException:
            lan.delete()
            raise
        return lan

    def _plug(self, name: str, address: str, port: str) -> None:
        host = Host(name, f"{PREFIX}-{os.getpid()}-{name}", address, port)
        if name == SWITCH:
            raise ValueError(f"{SWITCH!r} is the switch's name")
        ip("netns", "add", host.ns)
        self.hosts[name] = host
        # Made inside the namespaces: no interface ever appears in ours, even for a moment.
        ip("-n", self.switch, "link", "add", port, "type", "veth",
           "peer", "name", HOST_DEVICE, "netns", host.ns)  # fmt: skip
        ip("-n", self.switch, "link", "set", port, "master", BRIDGE)
        ip("-n", self.switch, "link", "set", port, "up")
        ip("-n", host.ns, "addr", "add", f"{address}/24", "dev", HOST_DEVICE)
        ip("-n", host.ns, "link", "set", HOST_DEVICE, "up")
        ip("-n", host.ns, "link", "set", "lo", "up")

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def address(self, name: str) -> str:
        return self.hosts[name].address

    def exec_prefix(self, name: str) -> tuple[str, ...]:
        """argv that runs a command on host `name`."""
        return ("ip", "netns", "exec", self.hosts[name].ns)

    def cut(self, name: str) -> None:
        """Unplug host `name`'s cable at the switch: nothing reaches it or leaves it."""
        ip("-n", self.switch, "link", "set", self.hosts[name].port, "down")
        self.cut_off.add(name)

    def restore(self, name: str) -> None:
        ip("-n", self.switch, "link", "set", self.hosts[name].port, "up")
        self.cut_off.discard(name)

    @contextlib.contextmanager
    def inside(self, name: str) -> Iterator[Host]:
        """The calling thread runs on host `name` (its new sockets are that host's) until the
        block ends; then it is back in the namespace it was in."""
        back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            enter_netns(self.hosts[name].ns)
            try:
                yield self.hosts[name]
            finally:
                setns(back, "the thread's own")
        finally:
            os.close(back)

    def delete(self) -> None:
        """Remove every host and the switch (with them the cables and the bridge)."""
        for host in self.hosts.values():
            ip("netns", "del", host.ns, check=False)
        ip("netns", "del", self.switch, check=False)
        self.hosts.clear()
        self.cut_off.clear()

    def __enter__(self) -> Lan:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.delete()

