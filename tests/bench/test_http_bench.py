"""``bench http``: its registration and argument parsing, and its load generator against a real server
(the reference HTTP baseline on 127.0.0.1) for a moment. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench import http_serving
from tests.sshd import free_port

REPO = Path(__file__).resolve().parents[2]


def test_http_is_a_registered_benchmark() -> None:
    assert "http" in bench_main._names()
    assert "http_serving" not in bench_main._names()
    assert bench_main._module("http") == "bench.http_serving"


def test_arguments_parse() -> None:
    args = http_serving.build_parser().parse_args(["--clients", "1,4", "--shapes", "baseline,stateless"])
    assert args.clients == [1, 4]
    assert args.shapes == ["baseline", "stateless"]
    assert http_serving.build_parser().parse_args([]).clients == [1, 8, 32]


@pytest.mark.parametrize(
    "argv",
    [
        ["--clients", "0"],
        ["--clients", "a,b"],
        ["--shapes", "carrier-pigeon"],
        ["--shapes", ""],
        ["--data", "/nonexistent/sales.csv"],
    ],
)
def test_bad_arguments_exit_2_with_a_sentence(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        http_serving.build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert argv[0] in capsys.readouterr().err  # the sentence names the option to fix


@pytest.fixture(scope="module")
def reference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    tmp_path = tmp_path_factory.mktemp("reference")
    port, key = free_port(), "test-key"
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench._reference_http_server",
            "--data",
            str(http_serving.DATA),
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "MCP_API_KEY": key},
    )
    try:
        http_serving._wait_ready(
            process, port, http_serving._shape("baseline", port, tmp_path), tmp_path / "server.log"
        )
        yield port, key
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_reference_server_refuses_a_wrong_key(reference_server: tuple[int, str]) -> None:
    port, _ = reference_server
    request = urllib.request.Request(f"http://127.0.0.1:{port}/sse", headers={"X-API-Key": "wrong"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401


def test_load_generator_measures_calls_over_sse(reference_server: tuple[int, str], tmp_path: Path) -> None:
    port, key = reference_server
    spec = {
        "kind": "sse",
        "host": "127.0.0.1",
        "port": port,
        "headers": {"Authorization": f"Bearer {key}"},
        "clients": [1, 2],
        "seconds": 1.5,
        "warmup": 0.1,
        "tool": http_serving.TOOL,
        "arguments": http_serving.ARGUMENTS,
        "out": str(tmp_path / "load.json"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench._http_load", json.dumps(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "load.json").read_text())["results"]
    assert [r["clients"] for r in results] == [1, 2]
    rows = [http_serving.summarize("baseline", r) for r in results]
    assert all(row.calls == len(r["latencies"]) for row, r in zip(rows, results, strict=True))
    assert sum(row.calls for row in rows) >= 1  # calls that end after the window are not counted
