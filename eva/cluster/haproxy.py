"""The balancer in front of the workers: HAProxy (Debian's ``haproxy`` package).

Health checks ask each worker's ``/health/ready``, which answers 503 while the worker is
full or draining: HAProxy then sends it no new connection, and the WebSockets it already
carries go on (a server marked down keeps its established tunnels). ``leastconn`` because
a conversation is one long connection: round-robin would count connections, not load.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

# Health checks every second, one failure takes a worker out and one success brings it
# back: a full worker leaves rotation within about a second, a drained one too.
CHECK_INTERVAL_MS = 1000
# A WebSocket is a tunnel for HAProxy; the page pings every 15 s, so an hour without a
# frame is a vanished client (Eva closes it sooner, EVA_WS_IDLE_TIMEOUT_S).
TUNNEL_TIMEOUT = "1h"
# An HTTP turn under load may take a while to answer; Eva refuses rather than queue long.
SERVER_TIMEOUT = "120s"

# What a client gets when no worker can take it: the same error shape as Eva's own 503.
_NO_WORKER_BODY = json.dumps(
    {
        "error": {
            "code": "busy",
            "message": "every Eva worker is full or stopping; try again in a few seconds",
            "type": "server_error",
            "param": None,
        }
    }
)
_NO_WORKER = (
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    "Retry-After: 2\r\nCache-Control: no-cache\r\nConnection: close\r\n"
    f"Content-Length: {len(_NO_WORKER_BODY)}\r\n\r\n{_NO_WORKER_BODY}"
)


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found is None:
        raise RuntimeError("HAProxy is not installed: apt-get install haproxy")
    return found


def haproxy_config(
    host: str, port: int, workers: Sequence[tuple[str, int]], directory: Path
) -> Path:
    """Write the configuration for ``workers`` ((host, port) each) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    error_file = directory / "503.http"
    error_file.write_text(_NO_WORKER)
    servers = "\n".join(
        f"    server worker{n} {address}:{worker_port} check"
        for n, (address, worker_port) in enumerate(workers, start=1)
    )
    config = f"""# Written by `eva cluster`; see eva/cluster/haproxy.py
global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server {SERVER_TIMEOUT}
    timeout tunnel {TUNNEL_TIMEOUT}
    timeout client-fin 5s
    # The client's address reaches Eva (its per-address limits) in X-Forwarded-For,
    # which uvicorn trusts from a proxy on this machine.
    option forwardfor
    # A connection refused by a dead worker is tried on another.
    option redispatch
    retries 2
    errorfile 503 {error_file}

frontend eva
    bind {host}:{port}
    default_backend workers

backend workers
    balance leastconn
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter {CHECK_INTERVAL_MS} fastinter {CHECK_INTERVAL_MS // 2} rise 1 fall 1
{servers}
"""
    path = directory / "haproxy.cfg"
    path.write_text(config)
    return path


def haproxy_command(config: Path) -> list[str]:
    """In the foreground (-db), as a child of the cluster."""
    return [haproxy_binary(), "-db", "-f", str(config)]
