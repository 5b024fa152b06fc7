"""A multi-worker cluster on one machine, for tests and benchmarks: the
environment (`TF_CONFIG`) of each worker process, on free localhost ports."""

import contextlib
import json
import os
import socket


def localhost_worker_environments(count):
    """Environments for `count` worker processes on free localhost ports, each
    with its `TF_CONFIG`: a multi-worker cluster on one machine (tests, benchmarks)."""
    # All sockets stay open until every port is read, so no two workers get
    # the same port; another process may still take one before TF binds it.
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("localhost", 0))
        ports = [s.getsockname()[1] for s in sockets]
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    return [
        {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        for i in range(count)
    ]
