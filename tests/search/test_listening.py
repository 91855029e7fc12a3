"""Local Ray, started by a search, listens on the loopback interface only (issue 11, item 8): nothing of an
unauthenticated one-machine cluster is reachable from the network. Sockets are read from /proc (Linux)."""

import ipaddress
import os
import re
from pathlib import Path

import pytest

from xgrid.search.options import SearchOptions
from xgrid.search.runner import ray_session

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc")

LISTEN = "0A"


def _listening_inodes() -> dict[str, tuple[str, int]]:
    """socket inode -> (local address, port) of every TCP socket in LISTEN state on this machine."""
    found = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != LISTEN:
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc writes the address as 32-bit words in host (little-endian) order.
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            address = ipaddress.ip_address(packed)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            found[inode] = (str(address), int(hex_port, 16))
    return found


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    todo, seen = [pid], set()
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += children.get(current, [])
    return seen


def listening_sockets(root_pid: int) -> list[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of every listening TCP socket of `root_pid` and its descendants."""
    inodes, rows = _listening_inodes(), []
    for pid in _descendants(root_pid):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        for link in links:
            match = re.fullmatch(r"socket:\[(\d+)\]", link)
            if match and match[1] in inodes:
                rows.append((pid, name, *inodes[match[1]]))
    return rows


def test_local_ray_listens_on_loopback_only():
    import ray

    with ray_session(SearchOptions(ray_init={"num_cpus": 1})):
        # A task makes Ray start a worker process, which runs a server of its own.
        assert ray.get(ray.remote(lambda: 1).remote()) == 1
        sockets = listening_sockets(os.getpid())
    names = {name for _, name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets  # the check saw Ray's servers at all
    exposed = [row for row in sockets if not ipaddress.ip_address(row[2]).is_loopback]
    assert not exposed, f"listening beyond the loopback interface: {exposed}"
