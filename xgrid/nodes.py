"""Which machine a process runs on, as the runs it logs name it (`xgrid.node`)."""

from __future__ import annotations


def node_name() -> str:
    """This process's Ray node IP inside Ray (what tells the nodes of a cluster apart, even two on one host),
    else the host name."""
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except Exception:  # no Ray, or a Ray that cannot say: the host name still tells machines apart
        pass
    import socket

    return socket.gethostname()
