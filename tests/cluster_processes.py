"""Real servers for the cluster tests: Debian's redis-server and nginx, Celery workers, API replicas.

Everything listens on 127.0.0.1. Nginx runs the repository's nginx.conf with its upstream pointed
at the replicas' ports. Each cluster uses its own Redis database, so clusters of different tests
share one redis-server without seeing each other's tasks or broker messages.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import redis

from conftest import PROJECT_ROOT, TEST_DEFAULTS, ServerProcess, free_port, launch_service, wait_until
from delivery_service.cluster.launcher import local_nginx_config, nginx_command

REDIS_OPTIONS = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--databases", "256")
WORKER_OPTIONS = ("--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel", "WARNING")
STARTUP_TIMEOUT_SECONDS = 60.0


class RedisServer:
    """Debian's redis-server on a free port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        assert Path(binary).exists(), "redis-server is missing: ./scripts/test installs Debian's redis-server package"
        self.port = free_port()
        self._log = (workdir / "redis.log").open("wb")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), *REDIS_OPTIONS],
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._databases = iter(range(256))
        wait_until(self._answers, STARTUP_TIMEOUT_SECONDS, "redis-server to start")

    def _answers(self) -> bool:
        assert self.process.poll() is None, "redis-server exited"
        try:
            return bool(redis.Redis(port=self.port).ping())
        except redis.ConnectionError:
            return False

    def new_database_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{next(self._databases)}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)
        self._log.close()


class CeleryWorker:
    """`celery -A delivery_service.cluster.worker worker` with one process (one crew at a time), in its own process group."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"worker-{name}.log"
        self._log = self.log_path.open("wb")
        full_env = {**os.environ, "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'tests'}", **TEST_DEFAULTS, **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "delivery_service.cluster.worker", "worker", "--concurrency", "1"]
            + ["--hostname", f"{name}@%h", *WORKER_OPTIONS],
            cwd=workdir,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pool_processes(self) -> list[int]:
        """The worker's pool processes (its children), from /proc."""
        pid = self.process.pid
        try:
            return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL to the whole worker (its main process and its pool process) at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class Nginx:
    """Debian's nginx with the repository's nginx.conf in front of `upstream_ports`."""

    def __init__(self, upstream_ports: list[int], workdir: Path) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        assert Path(binary).exists(), "nginx is missing: ./scripts/test installs Debian's nginx package"
        self.port = free_port()
        self.workdir = workdir
        config = workdir / "nginx.conf"
        config.write_text(local_nginx_config(upstream_ports, self.port, workdir))
        self.process = subprocess.Popen(nginx_command(config, workdir))
        self.base_url = f"http://127.0.0.1:{self.port}"
        wait_until(self._answers, STARTUP_TIMEOUT_SECONDS, "nginx to start")

    def _answers(self) -> bool:
        assert self.process.poll() is None, (self.workdir / "nginx-error.log").read_text()
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def upstreams_used(self) -> set[str]:
        """The replica addresses nginx has sent requests to (from its access log)."""
        lines = (self.workdir / "nginx-access.log").read_text().splitlines()
        return {line.rsplit(" ", 1)[-1] for line in lines if "127.0.0.1:" in line}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


class Cluster:
    """API replicas and Celery workers sharing one Redis database."""

    def __init__(self, redis_server: RedisServer, workdir: Path, replicas: int, workers: int, **settings: str) -> None:
        self.redis_url = redis_server.new_database_url()
        self.redis = redis.Redis.from_url(self.redis_url)
        self.workdir = workdir
        self.settings = {"REDIS_URL": self.redis_url, "WORKER_LEASE_SECONDS": "1", **settings}
        self.replicas: list[ServerProcess] = []
        self.workers: list[CeleryWorker] = []
        starting = [threading.Thread(target=self.add_replica) for _ in range(replicas)]
        for thread in starting:
            thread.start()
        for _ in range(workers):
            self.add_worker()
        for thread in starting:
            thread.join()
        assert len(self.replicas) == replicas, "a replica did not start"

    def add_replica(self) -> ServerProcess:
        replica = launch_service(self.workdir, self.settings)
        self.replicas.append(replica)
        return replica

    def add_worker(self) -> CeleryWorker:
        """Start one more worker and wait until its process announces itself in Redis."""
        known = set(self.redis.zrange("mad:workers", 0, -1))
        worker = CeleryWorker(f"w{len(self.workers) + 1}", self.settings, self.workdir)
        self.workers.append(worker)

        def announced() -> bool:
            assert worker.process.poll() is None, f"the worker exited:\n{worker.log()}"
            return bool(set(self.redis.zrange("mad:workers", 0, -1)) - known)

        wait_until(announced, STARTUP_TIMEOUT_SECONDS, f"worker {worker.name} to start")
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for replica in self.replicas:
            replica.stop()
        self.redis.close()
