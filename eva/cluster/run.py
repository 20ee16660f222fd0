"""``eva cluster``: PostgreSQL, one llama-server, N ``eva serve`` workers and HAProxy on one
machine, started in that order, watched, and stopped in the reverse order.

Each worker is an ordinary ``eva serve`` told by its environment where the shared pieces
are: ``EVA_DATABASE_URL`` (the store), ``EVA_LLM_BACKENDS=openai`` with the model server's
URL. A worker that dies is started again; its clients reconnect through the balancer to
another worker meanwhile and resume their sessions (the page does this by itself).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eva.bench.serve_process import free_port
from eva.cluster.haproxy import haproxy_command, haproxy_config
from eva.cluster.postgres import LocalPostgres
from eva.cluster.processes import Child
from eva.config import Settings
from eva.engines.llm_llamaserver import server_arguments
from eva.engines.llm_models import resolve_model_path

# Loading Whisper, the voices and the end-of-turn model, and warming them: seconds, more
# on a busy 2-core machine with several workers loading at once.
WORKER_START_TIMEOUT_S = 300.0
MODEL_SERVER_START_TIMEOUT_S = 300.0
# A worker drains on SIGTERM (EVA_DRAIN_TIMEOUT_S) and shuts down (7 s) before it is killed.
WORKER_STOP_TIMEOUT_S = 30.0
# How often the supervisor looks for dead children, and how long it waits before starting
# a dead worker again (a crash loop must not eat the CPU the others need).
WATCH_EVERY_S = 1.0
RESTART_DELAY_S = 2.0
DATABASE = "eva"
STATE_FILE = "cluster.json"
# The first token under a busy shared server can take seconds (four prompts at once on two
# cores); the remote backend's default 2 s is for a server elsewhere with a fallback.
FIRST_TOKEN_TIMEOUT_S = 60.0


@dataclass
class ClusterPlan:
    """Where everything listens; ports are picked free at start."""

    host: str
    port: int
    workers: int
    directory: Path
    database_url: str = ""  # "": a PostgreSQL of the cluster's own
    model_port: int = field(default_factory=free_port)
    worker_ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("a cluster needs at least one worker")
        if not self.worker_ports:
            self.worker_ports = [free_port() for _ in range(self.workers)]


class Cluster:
    def __init__(self, plan: ClusterPlan, settings: Settings) -> None:
        self.plan = plan
        self.settings = settings
        self.postgres: LocalPostgres | None = None
        self.model_server: Child | None = None
        self.workers: list[Child] = []
        self.balancer: Child | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.plan.host}:{self.plan.port}"

    def start(self, say: Callable[[str], None] = print) -> Cluster:
        plan, logs = self.plan, self.plan.directory / "logs"
        database_url = plan.database_url
        if not database_url:
            self.postgres = LocalPostgres(postgres_root(plan.directory), free_port()).start()
            database_url = self.postgres.create_database(DATABASE)
            say(f"PostgreSQL on 127.0.0.1:{self.postgres.port} ({self.postgres.root})")
        self.model_server = Child(
            "the model server (llama-server)",
            _model_server_command(self.settings, plan.model_port, plan.directory / "model"),
            logs / "llama-server.log",
            ready_url=f"http://127.0.0.1:{plan.model_port}/health",
            nice=self.settings.llm_nice,  # below the workers, as in one Eva (ModelServer)
        ).start()
        self.model_server.wait_ready(MODEL_SERVER_START_TIMEOUT_S)
        say(f"llama-server on 127.0.0.1:{plan.model_port} ({self.settings.llm_slots} slots)")
        for n, port in enumerate(plan.worker_ports, start=1):
            env = _worker_env(self.settings, plan, n, port, database_url)
            self.workers.append(
                Child(
                    f"worker {n}",
                    [sys.executable, "-m", "eva.cli", "serve"],
                    logs / f"worker{n}.log",
                    env=env,
                    ready_url=f"http://127.0.0.1:{port}/health",
                    is_ready=lambda reply: bool(reply.json().get("ready")),
                ).start()
            )
        for worker, port in zip(self.workers, plan.worker_ports, strict=True):
            worker.wait_ready(WORKER_START_TIMEOUT_S)
            say(f"{worker.name} on 127.0.0.1:{port}")
        config = haproxy_config(
            plan.host,
            plan.port,
            [("127.0.0.1", port) for port in plan.worker_ports],
            plan.directory / "haproxy",
        )
        self.balancer = Child(
            "HAProxy",
            haproxy_command(config),
            logs / "haproxy.log",
            ready_url=f"{self.url}/health/ready",
        ).start()
        self.balancer.wait_ready(30.0)
        self._write_state()
        say(f"Eva cluster ready on {self.url} ({plan.workers} workers behind HAProxy)")
        return self

    def _write_state(self) -> None:
        """``cluster.json``: what runs where, for an operator (and the tests) to find."""
        children = [self.balancer, self.model_server, *self.workers]
        ports = [self.plan.port, self.plan.model_port, *self.plan.worker_ports]
        state = {
            "url": self.url,
            "database": "own" if self.postgres is not None else "EVA_DATABASE_URL",
            "processes": [
                {"name": child.name, "port": port, "pid": child.pid, "log": str(child.log_path)}
                for child, port in zip(children, ports, strict=True)
                if child is not None
            ],
        }
        path = self.plan.directory / STATE_FILE
        path.write_text(json.dumps(state, indent=2) + "\n")

    def watch(self) -> None:
        """Until ``stop``: start dead workers again; a dead model server or balancer ends
        the cluster (it cannot serve without them)."""
        while not self._stopping.wait(WATCH_EVERY_S):
            for worker in self.workers:
                if not worker.alive and not self._stopping.is_set():
                    print(f"{worker.name} exited; starting it again", flush=True)
                    time.sleep(RESTART_DELAY_S)
                    worker.start()
                    self._write_state()
            for essential in (self.model_server, self.balancer):
                if essential is not None and not essential.alive:
                    print(f"{essential.name} exited:\n{essential.log_tail()}", flush=True)
                    return

    def stop(self) -> None:
        """Balancer first (no new connections), then the workers drain in parallel, then
        the model server and the database."""
        self._stopping.set()
        if self.balancer is not None:
            self.balancer.stop(5.0)
        stoppers = [
            threading.Thread(target=worker.stop, args=(WORKER_STOP_TIMEOUT_S,))
            for worker in self.workers
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        if self.model_server is not None:
            self.model_server.stop(10.0)
        if self.postgres is not None:
            self.postgres.stop()


def postgres_root(directory: Path) -> Path:
    """Under the cluster's directory, except as root: PostgreSQL then runs as another user,
    who cannot enter root's home, so its files go under the system's temporary directory."""
    if os.geteuid() != 0:
        return directory / "postgres"
    key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"eva-cluster-{key}" / "postgres"


def _model_server_command(settings: Settings, port: int, directory: Path) -> list[str]:
    """The same llama-server command a single Eva runs, on a loopback port instead of a
    private socket, so that every worker reaches it."""
    directory.mkdir(parents=True, exist_ok=True)
    model = resolve_model_path(settings.llm_model, settings.cache_dir)
    arguments = server_arguments(settings, model, directory, prompts_kept_by_eva=False)
    at = arguments.index("--host")
    arguments[at + 1 : at + 2] = ["127.0.0.1", "--port", str(port)]
    return arguments


def _worker_env(
    settings: Settings, plan: ClusterPlan, n: int, port: int, database_url: str
) -> dict[str, str]:
    # Each worker sends at most its share of the model's slots at once; its admission
    # control counts those (eva/conversation/turn_gate.py).
    streams = max(1, math.ceil(settings.llm_slots / plan.workers))
    return {
        "EVA_HOST": "127.0.0.1",
        "EVA_PORT": str(port),
        "EVA_DATA_DIR": str(plan.directory / f"worker{n}"),
        "EVA_DATABASE_URL": database_url,
        "EVA_LLM_BACKENDS": "openai",
        "EVA_OPENAI_BASE_URL": f"http://127.0.0.1:{plan.model_port}/v1",
        "EVA_OPENAI_MODEL": "eva-brain",
        "EVA_OPENAI_CONCURRENT_STREAMS": str(streams),
        "EVA_OPENAI_FIRST_TOKEN_TIMEOUT_S": str(FIRST_TOKEN_TIMEOUT_S),
        # Behind the balancer, the Host a client names is the balancer's.
        "EVA_ALLOWED_HOSTS": ",".join([*settings.allowed_hosts, plan.host]),
    }


def run_cluster(plan: ClusterPlan, settings: Settings) -> int:
    """Start, watch until Ctrl-C or SIGTERM, stop."""
    cluster = Cluster(plan, settings)

    def stop_on_signal(signum: int, frame: object) -> None:
        cluster._stopping.set()

    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    try:
        cluster.start()
        cluster.watch()
    finally:
        print("stopping the cluster (workers drain first)", flush=True)
        cluster.stop()
    return 0
