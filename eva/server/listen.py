"""The listening socket of ``eva serve``, with a bounded send buffer per connection.

TCP autotunes a connection's kernel send buffer up to ``net.ipv4.tcp_wmem`` (4 MiB here):
a /ws client that stops reading would then absorb over a minute of Eva's voice before a
send blocks and the server notices (see eva/server/outbox.py). A fixed buffer, inherited by
every accepted connection, bounds what a connection holds and makes a stalled reader show
within seconds. Eva's traffic is light (a voice is 44 KB/s), so the cap costs no speed.
"""

from __future__ import annotations

import socket

# Per connection, in the kernel (Linux doubles it for bookkeeping): about 3 s of 22 kHz
# speech, enough to ride out any network hiccup a conversation survives.
SEND_BUFFER_BYTES = 128 * 1024


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket for ``host:port`` whose connections inherit the cap."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    sock.set_inheritable(True)
    return sock
