"""Two Linux network namespaces joined by a veth pair, a partition between them, and a TCP
forwarder from this process's loopback into one of them.

Only addresses inside the namespaces made here are used (10.251.x.1 and .2 on the veth pair,
and each namespace's own loopback); nothing is added to the host's namespace but the forwarder's
listening socket on 127.0.0.1. The partition is silent (blackhole routes on both sides: no RST,
the sender's bytes wait in its buffer and arrive late after the heal), as a cut cable would be;
`tc netem` is not in every kernel. Needs root; `Pair.create` raises NetnsUnavailable with the
kernel's answer when namespaces cannot be made.

Imports only the stdlib.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import threading
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
PREFIX = "hdrf"


class NetnsUnavailable(Exception):
    """This machine will not make network namespaces (not root, no kernel support)."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> None:
    """Delete namespaces of earlier runs of this harness whose process is gone (a run killed
    before its cleanup); never those of a live run."""
    listing = ip("netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        mine = len(parts) == 3 and parts[0] == PREFIX and parts[1].isdigit()
        if mine and not _pid_alive(int(parts[1])):
            ip("netns", "del", name, check=False)


@dataclass
class Pair:
    """Namespaces `a` (address `a_addr`) and `b` (`b_addr`) joined by a veth pair."""

    a: str
    b: str
    a_addr: str
    b_addr: str
    cut: bool = False

    @classmethod
    def create(cls, subnet: int = 7) -> Pair:
        remove_leftovers()
        pid = os.getpid()
        a, b = f"{PREFIX}-{pid}-a", f"{PREFIX}-{pid}-b"
        first = ip("netns", "add", a, check=False)
        if first.returncode != 0:
            raise NetnsUnavailable(f"ip netns add: {first.stderr.strip()}")
        pair = cls(a, b, f"10.251.{subnet}.1", f"10.251.{subnet}.2")
        try:
            ip("netns", "add", b)
            veth_a, veth_b = f"hv{pid % 100000}a", f"hv{pid % 100000}b"
            ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
            ip("link", "set", veth_a, "netns", a)
            ip("link", "set", veth_b, "netns", b)
            for ns, dev, addr in ((a, veth_a, pair.a_addr), (b, veth_b, pair.b_addr)):
                ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
                ip("-n", ns, "link", "set", dev, "up")
                ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            pair.delete()
            raise
        return pair

    def exec_prefix(self, ns: str) -> tuple[str, ...]:
        """argv that runs a command inside namespace `ns`."""
        return ("ip", "netns", "exec", ns)

    def partition(self) -> None:
        """Drop every packet between the two, silently, in both directions."""
        ip("-n", self.a, "route", "add", "blackhole", f"{self.b_addr}/32")
        ip("-n", self.b, "route", "add", "blackhole", f"{self.a_addr}/32")
        self.cut = True

    def heal(self) -> None:
        ip("-n", self.a, "route", "del", "blackhole", f"{self.b_addr}/32", check=False)
        ip("-n", self.b, "route", "del", "blackhole", f"{self.a_addr}/32", check=False)
        self.cut = False

    def delete(self) -> None:
        """Remove both namespaces (and with them the veth pair and the routes)."""
        for ns in (self.a, self.b):
            ip("netns", "del", ns, check=False)


def enter_netns(name: str) -> None:
    """Move the calling thread (only it) into network namespace `name`."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        setns(fd, name)
    finally:
        os.close(fd)


def setns(fd: int, name: str) -> None:
    """Move the calling thread into the network namespace open as `fd` (called `name`)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns {name}: {os.strerror(errno)}")


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class Forwarder:
    """Listens on 127.0.0.1:`port` here and forwards each connection to 127.0.0.1:`port`
    inside namespace `ns`: the listening socket is made before the accepting thread enters the
    namespace, and sockets belong to the namespace they were made in."""

    def __init__(self, ns: str, port: int) -> None:
        self.ns, self.port = ns, port
        self._listener = socket.create_server(("127.0.0.1", port))
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name="netns-forwarder", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread.start()
        self._ready.wait(5)
        if self._error is not None:
            raise self._error

    def _serve(self) -> None:
        try:
            enter_netns(self.ns)
        except BaseException as exc:
            self._error = exc
            return
        finally:
            self._ready.set()
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(src, dst), daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()
        self._thread.join(2)
