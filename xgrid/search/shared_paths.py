"""On a cluster of several nodes, every local folder a trial reads or writes must be one that every node sees.

A local `--store-root` (stage-1 checkpoints, the tiny model) and Ray's trial storage in the search folder (the
checkpoints a retried trial continues from) are read and written by whichever node runs a trial. On nodes that
share no file system each would see its own empty folder: trials would fail far from the cause, or a retry would
start over. So before anything runs, a probe file is written into each such folder and one task per alive node
looks for it; a folder some node cannot see is refused by name, with the way out (`--store-root s3://...`, which
also holds Ray's trial storage, or a file system every node mounts). A URI root needs no probe: every node
reaches it the same way.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import ray

from xgrid.running.store import is_uri

PROBE_TIMEOUT_S = 300  # a generous guard for a busy cluster: a node that runs no task in this time is the problem


class UnsharedFolder(RuntimeError):
    pass


@ray.remote(num_cpus=0)
def _sees(paths: list[str], token: str) -> tuple[str, list[str]]:
    import socket

    missing = [path for path in paths if not (Path(path) / f".xgrid-probe-{token}").is_file()]
    return f"{ray.util.get_node_ip_address()} ({socket.gethostname()})", missing


def check_shared(folders: dict[str, str]) -> None:
    """`folders`: what each is (for the message, e.g. "--store-root") -> its path or URI. Raises UnsharedFolder
    naming every folder and the nodes that cannot see it. One node: nothing to check."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
    local = {what: str(Path(path).absolute()) for what, path in folders.items() if not is_uri(path)}
    if len(nodes) < 2 or not local:
        return
    token = secrets.token_hex(8)
    probes = []
    try:
        for path in local.values():
            Path(path).mkdir(parents=True, exist_ok=True)
            probe = Path(path) / f".xgrid-probe-{token}"
            probe.write_text(token)
            probes.append(probe)
        tasks = [_sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
                               name="xgrid-shared-folder-probe").remote(list(local.values()), token)
                 for node in nodes]
        answers = ray.get(tasks, timeout=PROBE_TIMEOUT_S)
    finally:
        for probe in probes:
            probe.unlink(missing_ok=True)
    problems = []
    for what, path in local.items():
        blind = [node for node, missing in answers if path in missing]
        if blind:
            problems.append(f"{what} {path} is not visible from node {', '.join(blind)}")
    if problems:
        raise UnsharedFolder(
            "; ".join(problems) + f" (of {len(nodes)} nodes): trials run on every node and read and write these "
            "folders; use --store-root s3://BUCKET/PREFIX (stage-1 checkpoints and Ray's trial storage then live "
            "there) or folders on a file system every node mounts")
