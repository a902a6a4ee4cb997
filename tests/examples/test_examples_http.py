"""The examples over HTTP: the plain MCP client and the Gemini chat against a real ``mcp-sales serve
--transport streamable-http`` subprocess on 127.0.0.1 that takes an API key. Gemini is faked at its
boundary, as in ``test_examples.py``; everything else is real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples import gemini_client_ssh as gem
from examples import mcp_client_http, mcp_client_ssh
from examples._transport import API_KEY_ENV, HttpServer, TransportError, http_server
from tests.examples.test_examples import (
    KEY,
    TOOLS,
    ScriptedModels,
    answer,
    calls,
    error_lines,
    expected_top,
    fake_genai,
    mcp_logging_kept,
    run_example,
    sample_csv_in,
)
from tests.mcp_sales.http.helpers import HttpServer as ServerProcess

SERVER_KEY = "srv-key-7c2e51b0d9"  # a fake server key: it must never show up in any output


@pytest.fixture(scope="module")
def sales_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_csv_in(tmp_path_factory.mktemp("examples-http-data"))


@pytest.fixture(autouse=True)
def keep_mcp_logging() -> Iterator[None]:
    """The examples' ``main()`` quiets the SDK's logger for the process; give it back afterwards."""
    with mcp_logging_kept():
        yield


@pytest.fixture(scope="module")
def server(sales_csv: Path) -> Iterator[ServerProcess]:
    """One keyed streamable-HTTP server for the module (its start is the slow part)."""
    process = ServerProcess.start(
        ["--transport", "streamable-http", "--data", str(sales_csv)], env={API_KEY_ENV: SERVER_KEY}
    )
    try:
        yield process
    finally:
        process.stop()


def no_secret_in(*texts: str) -> bool:
    return all(SERVER_KEY not in text and KEY not in text for text in texts)


def test_mcp_client_over_http_answers_with_the_real_data(server: ServerProcess, sales_csv: Path) -> None:
    url = f"{server.url}/mcp"
    done = run_example(
        "examples.mcp_client_http",
        *("--url", url, "--api-key", SERVER_KEY, "--operation", "Dallas", "--n", "5", "--horizon", "0"),
        drop_env=(API_KEY_ENV,),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for tool in TOOLS:
        assert any(line.split()[:1] == [tool] for line in lines), f"{tool} not listed:\n{done.stdout}"
    rows = []
    for name, units in expected_top(sales_csv, "Dallas", 5):
        matches = [i for i, line in enumerate(lines) if f" {name} " in line and f" {units:,.0f} " in line]
        assert matches, f"no row with {name} and {units:,.0f} units:\n{done.stdout}"
        rows.append(matches[0])
    assert rows == sorted(rows), "top products are not in the pandas order"
    assert no_secret_in(done.stdout, done.stderr, server.log())


def run_client(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``examples.mcp_client_http`` in this process (cheaper than a subprocess); code, out, err."""
    code = mcp_client_http.main([*args, "--horizon", "0", "--connect-timeout", "20"])
    out, err = capfd.readouterr()
    return code, out, err


def test_mcp_client_over_http_reads_the_key_from_the_environment_and_names_a_refusal(
    server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    # A bare host:port gets the /mcp path; the key comes from $MCP_API_KEY.
    monkeypatch.setenv(API_KEY_ENV, SERVER_KEY)
    code, out, err = run_client(capfd, "--url", server.url)
    assert code == 0, err
    assert "Top 5 of 25 products in Dallas" in out

    wrong_path = run_client(capfd, "--url", f"{server.url}/api")
    assert wrong_path[0] == 3
    assert error_lines(wrong_path[2]) == [
        f"error: {server.url}/api has no MCP endpoint at this path (404); the server's endpoint is /mcp"
    ]

    monkeypatch.setenv(API_KEY_ENV, "not-the-key")
    code, refused_out, refused = run_client(capfd, "--url", server.url)
    assert code == 3 and refused_out == ""
    assert error_lines(refused) == [
        f"error: {server.url}/mcp refused the credentials (401): pass the server's key with --api-key"
        " or $MCP_API_KEY, or a fresh OAuth access token"
    ]
    assert "Traceback" not in refused

    monkeypatch.delenv(API_KEY_ENV)
    missing = run_client(capfd, "--url", server.url)
    assert missing[0] == 3 and "refused the credentials (401)" in missing[2]
    assert no_secret_in(out, err, refused, server.log())


def test_mcp_client_over_http_without_a_server_is_one_line_and_exit_3(
    capfd: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_client(capfd, "--url", "http://127.0.0.1:9/mcp", "--api-key", SERVER_KEY)
    assert code == 3
    assert error_lines(err) == [
        "error: cannot reach http://127.0.0.1:9/mcp (ConnectError);"
        " check --url and that the server is running"
    ]


def test_http_urls_are_checked_before_any_key_is_sent(
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert http_server("https://sales.example.com", "k") == HttpServer("https://sales.example.com/mcp", "k")
    assert http_server("http://127.0.0.1:8000/mcp").headers() == {}
    assert http_server("http://localhost:8000/x", " k ").headers() == {"Authorization": "Bearer k"}
    assert "secret" not in repr(http_server("https://sales.example.com", "secret"))
    with pytest.raises(TransportError, match="clear text"):
        http_server("http://10.0.0.5:8000/mcp", "k")
    with pytest.raises(TransportError, match="not an http"):
        http_server("ftp://sales.example.com")
    assert mcp_client_ssh.main(["--local", "--api-key", "k"]) == 2
    assert error_lines(capfd.readouterr().err) == [
        "error: --api-key goes with --url (a server reached over SSH or run here needs none)"
    ]
    code, _, err = run_client(capfd, "--url", "http://sales.example.com/mcp", "--api-key", "k")
    assert code == 2 and "clear text" in err


def test_gemini_chat_over_http_runs_the_real_tool(
    server: ServerProcess,
    sales_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    final = "Dallas's best seller is shown above."
    models = ScriptedModels(calls(("top_n_products", {"operation": "Dallas", "n": 3.0})), answer(final))
    keys = fake_genai(monkeypatch, models)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    code = gem.main(["--url", f"{server.url}/mcp", "--api-key", SERVER_KEY, "top 3 in Dallas?"])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert out.strip() == final
    assert f"connected to {server.url}/mcp" in err
    assert keys == [KEY]
    (response,) = [
        part.function_response
        for part in models.requests[1][1][-1].parts or ()
        if part.function_response is not None
    ]
    got = [(p["product_name"], p["units"]) for p in (response.response or {})["result"]["products"]]
    assert got == expected_top(sales_csv, "Dallas", 3)
    assert no_secret_in(out, err, server.log())


def test_gemini_list_tools_over_http_and_a_refused_key(
    server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    args = ["--url", f"{server.url}/mcp", "--list-tools"]
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert gem.main(args) == 3
    out, err = capfd.readouterr()
    assert out == "" and "refused the credentials (401)" in err
    monkeypatch.setenv(API_KEY_ENV, SERVER_KEY)
    assert gem.main(args) == 0
    assert {d["name"] for d in json.loads(capfd.readouterr().out)} == TOOLS
