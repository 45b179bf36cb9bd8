"""The cluster on one machine, without Docker: `scripts/cluster` (or `python -m delivery_service.cluster.launcher`).

Starts `redis-server`, `nginx`, the API replicas and Celery workers on 127.0.0.1, with the settings of the
environment and `.env` (REDIS_URL set for them), and stops them all on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_SERVERS = re.compile(r"(\s*server [\w-]+:8000([^;]*);)+")
START_TIMEOUT_SECONDS = 90.0


def local_nginx_config(upstream_ports: list[int], listen_port: int, workdir: Path) -> str:
    """`nginx.conf` with its upstream pointed at replicas on 127.0.0.1 and its files kept in `workdir`.

    The access log records which replica served each request (`$upstream_addr`, last on the line).
    """
    config = (PROJECT_ROOT / "nginx.conf").read_text()
    upstream = UPSTREAM_SERVERS.search(config)
    if upstream is None or "listen 80;" not in config:
        raise ValueError("nginx.conf no longer has the `server <replica>:8000` upstream and `listen 80;` this expects")
    servers = "".join(f"\n        server 127.0.0.1:{port}{upstream.group(2)};" for port in upstream_ports)
    config = config.replace(upstream.group(0), servers).replace("listen 80;", f"listen 127.0.0.1:{listen_port};")
    logs = (
        "http {\n    log_format upstreamed '$request $status $upstream_addr';\n"
        f"    access_log {workdir}/nginx-access.log upstreamed;"
    )
    return config.replace("http {", logs, 1)


def nginx_command(config_path: Path, workdir: Path) -> list[str]:
    """Nginx in the foreground with its pid and error log in `workdir` (no root, no /var files)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    directives = f"daemon off; pid {workdir}/nginx.pid; error_log {workdir}/nginx-error.log;"
    return [binary, "-c", str(config_path), "-g", directives]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_for(url: str, processes: list[subprocess.Popen[bytes]]) -> str | None:
    """None once `url` answers; else why it never will (a process exited, or the time ran out)."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _answers(url):
        if any(process.poll() is not None for process in processes):
            return f"a process exited while starting; see its log in the work directory ({url})"
        if time.monotonic() > deadline:
            return f"{url} did not answer within {START_TIMEOUT_SECONDS:.0f} s"
        time.sleep(0.2)
    return None


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2, help="API replicas (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes (default 1)")
    parser.add_argument("--concurrency", type=int, default=2, help="crews per worker at once (default 2)")
    parser.add_argument("--port", type=int, default=8080, help="Nginx's port, the one to use (default 8080)")
    parser.add_argument("--first-replica-port", type=int, default=8001, help="replicas listen from here (8001...)")
    parser.add_argument("--redis-port", type=int, default=6380, help="redis-server's port (default 6380)")
    parser.add_argument("--workdir", type=Path, default=Path("data/cluster"), help="logs, Redis and Nginx files")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{args.redis_port}/0"}
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, command: list[str]) -> None:
        log = (workdir / f"{name}.log").open("ab")
        processes.append(subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))

    def stop(status: int) -> None:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        raise SystemExit(status)

    def wait_for(port: int) -> None:
        if problem := _wait_for(f"http://127.0.0.1:{port}/readyz", processes):
            print(problem, file=sys.stderr, flush=True)
            stop(1)

    signal.signal(signal.SIGTERM, lambda *_: stop(0))
    signal.signal(signal.SIGINT, lambda *_: stop(0))
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    redis_options = f"--port {args.redis_port} --bind 127.0.0.1 --appendonly yes --appendfsync everysec"
    start("redis", [redis_server, *redis_options.split(), "--dir", str(workdir)])
    for index in range(args.workers):
        worker = f"-m celery -A delivery_service.cluster.worker worker --concurrency {args.concurrency} --loglevel INFO"
        start(f"worker-{index + 1}", [sys.executable, *worker.split(), "--hostname", f"worker{index + 1}@%h"])
    ports = [args.first_replica_port + index for index in range(args.replicas)]
    for port in ports:
        api = f"-m uvicorn main:app --host 127.0.0.1 --port {port} --no-access-log"
        start(f"api-{port}", [sys.executable, *api.split()])
    for port in ports:
        wait_for(port)
    config = workdir / "nginx.conf"
    config.write_text(local_nginx_config(ports, args.port, workdir))
    start("nginx", nginx_command(config, workdir))
    wait_for(args.port)
    print(
        f"cluster ready: http://127.0.0.1:{args.port}/test-ui ({args.replicas} replicas, {args.workers} "
        f"workers x {args.concurrency} crews, Redis on :{args.redis_port}); logs in {workdir}; Ctrl-C stops it all",
        flush=True,
    )
    while all(process.poll() is None for process in processes):
        time.sleep(1)
    print("a process of the cluster exited; stopping the rest (see the logs)", file=sys.stderr, flush=True)
    stop(1)


if __name__ == "__main__":
    main()
