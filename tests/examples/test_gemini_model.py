"""The Gemini example's model: Google's Flash alias by default, and an unknown name told in one sentence.

The Gemini API is a fake HTTP server on 127.0.0.1 (``GOOGLE_GEMINI_BASE_URL``) answering as Google
does for a model it does not have (404 NOT_FOUND); the real google-genai client talks to it, and the
MCP server is this checkout's, started locally on the sample data.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from examples import gemini_client_ssh as gem

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample_sales_data.csv"
KEY = "test-key-77c0e2"  # a fake key: it must never show up in any output


class _NoSuchModel(BaseHTTPRequestHandler):
    paths: list[str]

    def do_POST(self) -> None:
        self.paths.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        model = self.path.split("/models/", 1)[-1].split(":", 1)[0]
        body = json.dumps(
            {
                "error": {
                    "code": 404,
                    "message": f"models/{model} is not found for API version v1beta, or is not supported "
                    "for generateContent. Call ListModels to see the list of available models.",
                    "status": "NOT_FOUND",
                }
            }
        ).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        return


@pytest.fixture
def gemini_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A Gemini API on 127.0.0.1 that has no models; yields the paths it was asked for."""
    paths: list[str] = []
    handler = type("Handler", (_NoSuchModel,), {"paths": paths})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    try:
        yield paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_default_model_is_googles_flash_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gem.MODEL_ENV, raising=False)
    assert gem.DEFAULT_MODEL == "gemini-flash-latest"
    assert gem.build_parser().parse_args(["--local", "q"]).model == "gemini-flash-latest"
    monkeypatch.setenv(gem.MODEL_ENV, "gemini-other")
    assert gem.build_parser().parse_args(["--local", "q"]).model == "gemini-other"


@pytest.mark.parametrize("chosen", [None, "gemini-0.1-gone"])
def test_a_model_the_api_does_not_have_is_one_sentence_on_how_to_pick_another(
    gemini_api: list[str],
    chosen: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(gem.MODEL_ENV, raising=False)
    model = chosen or gem.DEFAULT_MODEL
    argv = ["--local", "--data", str(SAMPLE), *(["--model", chosen] if chosen else []), "best seller?"]
    code = gem.main(argv)
    out, err = capfd.readouterr()
    assert code == gem.EXIT_UNREACHABLE and out == ""
    assert any(f"/models/{model}:generateContent" in path for path in gemini_api)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {gem.unknown_model(model)}"]
    assert "--model NAME" in errors[0] and "$GEMINI_MODEL" in errors[0] and KEY not in err
