"""Real processes for the warm-start tests: the launch command, a warm server, a line-based client.

Every wait is bounded: reads go through a queue filled by a reader thread (``queue.get(timeout=)``),
process waits take a timeout, and polling loops stop at a deadline.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mcp_sales.warm import attach

REPO = Path(__file__).resolve().parents[3]
WAIT = 120.0  # a warm server imports for a few seconds; a loaded 2-core machine takes far longer
ANSWER_WAIT = 90.0
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


def launch_argv(*args: str, root: Path = REPO) -> list[str]:
    """The launch command as the host runs it (see ``RemoteLayout.server_argv``)."""
    return [sys.executable, "-I", "-S", str(root / "mcp_sales" / "warm" / "attach.py"), *args]


def warm_env(directory: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, attach.DIR_ENV: str(directory), **extra}


def until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``check`` until it holds, at most ``timeout`` seconds.

    Raises:
        AssertionError: it never held.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def status(directory: Path) -> str | None:
    return attach.ask("status", str(directory))


def wait_ready(directory: Path, timeout: float = WAIT) -> str:
    """The status line of the warm server in ``directory`` once it takes sessions."""
    until(f"a warm server in {directory}", lambda: (status(directory) or "").startswith("ready"), timeout)
    return status(directory) or ""


def served(directory: Path) -> int:
    words = (status(directory) or "").split()
    return int(words[words.index("served") + 1])


def daemon_pid(directory: Path) -> int:
    words = (status(directory) or "").split()
    return int(words[words.index("pid") + 1])


def last_session(directory: Path) -> str:
    return (directory / attach.LAST_NAME).read_text().strip()


def start_daemon(
    directory: Path, *extra: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``mcp-sales warm`` in the foreground of a test (its log in ``directory/daemon.log``)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    log = (directory / "daemon.log").open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "mcp_sales", "warm", "--dir", str(directory), *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=REPO,
            env=dict(env or os.environ),
        )
    finally:
        log.close()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_daemon(directory: Path) -> None:
    """Stop the warm server in ``directory``, if any, and wait until it is gone."""
    line = status(directory)
    if line is None:
        return
    pid = int(line.split()[line.split().index("pid") + 1])
    os.kill(pid, signal.SIGTERM)
    until("the warm server to exit", lambda: not alive(pid), 30)


class Session:
    """One MCP session over a process's pipes, raw JSON-RPC lines; keeps every stdout byte."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
        )
        self.raw = bytearray()
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.stderr = bytearray()
        self._next = 1
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.raw += line
            self.lines.put(line)
        self.lines.put(b"")

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr += line

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def receive(self, request_id: int, timeout: float = ANSWER_WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            if not line:
                stderr = bytes(self.stderr).decode(errors="replace")
                raise AssertionError(f"the server closed stdout before answering {request_id}: {stderr}")
            message: dict[str, Any] = json.loads(line)
            if message.get("id") == request_id:
                return message

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next += 1
        self.send({"jsonrpc": "2.0", "id": self._next, "method": method, "params": params or {}})
        return self.receive(self._next)

    def initialize(self) -> dict[str, Any]:
        self.send(INITIALIZE)
        answer = self.receive(1)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        result: dict[str, Any] = answer["result"]
        return result

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = self.request("tools/call", {"name": tool, "arguments": arguments})
        result: dict[str, Any] = answer["result"]
        assert not result.get("isError"), result
        return result

    def close(self, timeout: float = 30.0) -> int:
        """Close stdin (the end of a session) and wait for the exit status."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def assert_all_json_rpc(self) -> None:
        """Every byte written to stdout is a JSON-RPC message on its own line."""
        for line in bytes(self.raw).splitlines():
            assert json.loads(line)["jsonrpc"] == "2.0", line
