"""The pod network of a one-node cluster on this machine, in network namespaces the run creates
and removes: a "node" namespace holding a bridge (the node's side of every pod), one namespace
per pod joined to it by a veth pair (the pod's eth0, its IP, a default route via the bridge), and
the cluster DNS on the bridge's address answering the Services' names. The node namespace has no
link to the machine's own network: nothing a pod sends can leave the machine.

Probes and the operator's HTTP calls run in threads that joined the node namespace (setns is
per thread for network namespaces), as a kubelet calls pods from its node."""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
SUBNET = ipaddress.ip_network("10.231.0.0/24")  # lives only inside the node namespace


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def enter_netns(name: str) -> None:
    """Moves the calling thread into network namespace `name` (/run/netns/NAME)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into network namespace {name}")
    finally:
        os.close(fd)


class NodeNetwork:
    """The node's namespace and bridge, the pods' namespaces, and the cluster DNS."""

    def __init__(self, prefix: str):
        self.prefix = prefix  # unique per run: namespaces and links are named after it
        self.node = f"{prefix}-node"
        self.gateway = str(next(SUBNET.hosts()))
        self.pods: dict[str, str] = {}  # pod name -> its namespace
        self.records: dict[str, str] = {}  # DNS name -> IP
        self._next = 10
        self._executor: ThreadPoolExecutor | None = None
        self._dns: ClusterDNS | None = None

    def __enter__(self) -> NodeNetwork:
        try:
            ip("netns", "add", self.node)
            ip("-n", self.node, "link", "set", "lo", "up")
            ip("-n", self.node, "link", "add", "br0", "type", "bridge")
            ip("-n", self.node, "addr", "add", f"{self.gateway}/{SUBNET.prefixlen}", "dev", "br0")
            ip("-n", self.node, "link", "set", "br0", "up")
            self._executor = ThreadPoolExecutor(8, f"{self.node}-", initializer=enter_netns, initargs=(self.node,))
            self._dns = ClusterDNS(self.node, self.gateway, self.records)
            self._dns.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._dns is not None:
            self._dns.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        for ns in [*self.pods.values(), self.node]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.pods.clear()

    def add_pod(self, pod: str) -> tuple[str, str]:
        """A namespace for `pod` on the bridge: returns (its /run/netns path, its IP)."""
        n = self._next
        self._next += 1
        ns = f"{self.prefix}-p{n}"
        address = str(SUBNET.network_address + n)
        self.pods[pod] = ns
        ip("netns", "add", ns)
        ip("-n", self.node, "link", "add", f"veth{n}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("-n", self.node, "link", "set", f"veth{n}", "master", "br0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "addr", "add", f"{address}/{SUBNET.prefixlen}", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "route", "add", "default", "via", self.gateway)
        return f"/run/netns/{ns}", address

    def remove_pod(self, pod: str) -> None:
        ns = self.pods.pop(pod, None)
        if ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def resolv_conf(self, namespace: str) -> str:
        """A pod's /etc/resolv.conf under ClusterFirst DNS."""
        search = f"{namespace}.svc.cluster.local svc.cluster.local cluster.local"
        return f"search {search}\nnameserver {self.gateway}\noptions ndots:5\n"

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs fn in the node's namespace (as the kubelet and the operator reach pods)."""
        assert self._executor is not None
        return self._executor.submit(fn, *args).result()


class ClusterDNS:
    """A minimal authoritative DNS server for the cluster's names (A records; NXDOMAIN for any
    other name: there is no upstream), on UDP port 53 of the node's bridge address."""

    def __init__(self, netns: str, address: str, records: dict[str, str]):
        self.netns, self.address, self.records = netns, address, records
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name=f"{netns}-dns", daemon=True)
        self._ready = threading.Event()
        self._stop = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)
        if self._sock is None:
            raise RuntimeError(f"the cluster DNS did not start in {self.netns}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _serve(self) -> None:
        enter_netns(self.netns)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.address, 53))
        sock.settimeout(0.2)
        self._sock = sock
        self._ready.set()
        with contextlib.closing(sock):
            while not self._stop.is_set():
                try:
                    query, peer = sock.recvfrom(512)
                except TimeoutError:
                    continue
                with contextlib.suppress(Exception):
                    sock.sendto(self.answer(query), peer)

    def answer(self, query: bytes) -> bytes:
        ident, flags = struct.unpack("!HH", query[:4])
        labels, i = [], 12
        while query[i]:
            labels.append(query[i + 1 : i + 1 + query[i]].decode().lower())
            i += 1 + query[i]
        qtype, _ = struct.unpack("!HH", query[i + 1 : i + 5])
        question = query[12 : i + 5]
        name = ".".join(labels)
        found = self.records.get(name)
        rcode = 0 if found else 3  # NXDOMAIN: no such name
        answers = b""
        if found and qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton(found)
        header = struct.pack("!HHHHHH", ident, 0x8400 | (flags & 0x0100) | rcode, 1, 1 if answers else 0, 0, 0)
        return header + question + answers
