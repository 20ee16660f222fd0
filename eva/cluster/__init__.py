"""Several Eva processes as one service on one machine, for a trial (``eva cluster``).

Everything here is an existing engine started and watched, not a home-made one: HAProxy
balances and health-checks, PostgreSQL holds the shared state, llama.cpp's llama-server
serves the model to every worker. docs/scaling.md maps the same pieces onto several
machines.
"""
