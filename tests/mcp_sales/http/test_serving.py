"""Starting the HTTP server: refusals at start-up (a public address without auth, a bad key file or
certificate), TLS with a certificate made here, /health following a data file that breaks and is
fixed, and --workers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import shutil
import ssl
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mcp_sales.http.runner import StartupError, preflight
from mcp_sales.http.settings import HttpSettings, dump, load
from mcp_sales.server import ServerConfig
from tests.mcp_sales.http.helpers import HttpServer, run_to_exit

KEY = "serving-key-0123456789abcdef"
TIMEOUT = 30.0


def test_a_public_address_without_auth_is_refused_in_one_sentence(tmp_path: Path) -> None:
    done = run_to_exit(["--transport", "streamable-http", "--host", "0.0.0.0", "--port", "0"])
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without authentication" in done.stderr
    assert "--insecure-no-auth" in done.stderr and "Traceback" not in done.stderr
    assert "listening" not in done.stderr


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (HttpSettings(host="10.1.2.3"), "refusing to serve on 10.1.2.3 without authentication"),
        (HttpSettings(api_key_file=Path("/nonexistent/keys")), "cannot read the API key file"),
        (
            HttpSettings(ssl_certfile=Path("/nonexistent/cert.pem")),
            "needs both --ssl-certfile and --ssl-keyfile",
        ),
        (
            HttpSettings(ssl_certfile=Path("/nonexistent/c.pem"), ssl_keyfile=Path("/nonexistent/k.pem")),
            "cannot read the certificate",
        ),
        (HttpSettings(oauth_issuer="http://auth.example.com/pool"), "not an https URL"),
        (HttpSettings(transport="sse", stateless=True), "--stateless applies to --transport streamable-http"),
        (HttpSettings(workers=2), "--workers 2 needs --stateless"),
        (HttpSettings(oauth_issuer="https://auth.example.com/pool"), "--oauth-audience is empty"),
    ],
)
def test_start_up_refusals_say_what_to_do(
    settings: HttpSettings, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MCP_API_KEY", raising=False)
    with pytest.raises(StartupError, match=re.escape(says)):
        preflight(settings)


def test_a_key_file_without_keys_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# only a comment\n\n")
    with pytest.raises(StartupError, match="holds no key; write one key per line"):
        preflight(HttpSettings(api_key_file=key_file))
    key_file.write_text("# the team's key\nk1\n")
    key_file.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert preflight(HttpSettings(host="0.0.0.0", api_key_file=key_file)).api_key_file == key_file
    assert f"the API key file {key_file} is readable by other users; chmod 600 it" in caplog.text


def make_certificate(directory: Path, days: int = 30) -> tuple[Path, Path, dt.datetime]:
    """A self-signed certificate for 127.0.0.1: (cert, key, notAfter)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    not_after = now + dt.timedelta(days=days)
    import ipaddress

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path, not_after


def test_over_tls_health_is_503_for_a_broken_data_file_and_200_once_fixed_without_a_restart(
    tmp_path: Path, small_csv: Path
) -> None:
    cert, key, not_after = make_certificate(tmp_path)
    good = tmp_path / "good.csv"
    shutil.copyfile(small_csv, good)
    small_csv.write_text("this,is\nnot,sales data\n")
    server = HttpServer.start(
        [
            *("--transport", "streamable-http", "--data", str(small_csv)),
            *("--ssl-certfile", str(cert), "--ssl-keyfile", str(key)),
        ],
        env={"MCP_API_KEY": KEY},
    )
    try:
        assert server.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))
        # "starting" (503 too) while the first check runs, then the verdict on the broken file
        broken = server.health_until({"unavailable"}, verify=trusted)
        assert broken.status_code == 503 and broken.json()["error"]
        with httpx2.Client(verify=trusted, timeout=TIMEOUT, headers={"X-API-Key": KEY}) as http:
            info = http.get(f"{server.url}/info").json()
        assert dt.datetime.fromisoformat(info["tls"]["not_after"]) == not_after
        assert info["tls"]["days_left"] in (29, 30)
        assert info["data_status"] == "unavailable"
        assert str(small_csv) not in broken.text and str(small_csv.name) in info["data_error"]
        with pytest.raises(httpx2.ConnectError):  # an untrusted certificate is refused by the client
            httpx2.get(f"{server.url}/health", timeout=TIMEOUT)

        shutil.copyfile(good, small_csv)
        fixed = server.health_until({"ok"}, verify=trusted)
        assert fixed.status_code == 200, fixed.text
        assert len(fixed.json()["data_version"]) == 12
    finally:
        server.stop()


@pytest.mark.slow  # three interpreters start: the parent and two spawned workers
def test_two_workers_share_one_port(small_csv: Path) -> None:
    server = HttpServer.start(
        ["--transport", "streamable-http", "--stateless", "--workers", "2", "--data", str(small_csv)],
        env={"MCP_API_KEY": KEY},
    )
    try:
        pids = {line.rsplit("[", 1)[-1] for line in server.wait_for_count(r"Started server process", 2)}
        assert len(pids) == 2  # two processes serving the one socket
        with httpx2.Client(timeout=TIMEOUT, headers={"Authorization": f"Bearer {KEY}"}) as http:
            for _ in range(4):
                info = http.get(f"{server.url}/info")
                assert info.status_code == 200 and info.json()["stateless"] is True
            assert (
                http.get(f"{server.url}/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
            )
        assert server.health_until({"ok"}).status_code == 200
    finally:
        assert server.stop() in (0, -15)


def test_worker_settings_travel_without_the_keys(tmp_path: Path) -> None:
    config = ServerConfig(data_path=tmp_path / "sales.csv", columns={"units": "QTY"}, cache_dir=tmp_path)
    settings = HttpSettings(
        stateless=True,
        workers=2,
        api_keys=(KEY,),
        api_key_file=tmp_path / "keys",
        oauth_scopes=("sales/read",),
    )
    text = dump(config, settings)
    assert KEY not in text
    assert load(text) == (config, dataclasses.replace(settings, api_keys=()))


def test_http_options_without_a_transport_are_refused_not_ignored() -> None:
    from mcp_sales.__main__ import parse_args
    from mcp_sales.http.options import stdio_misfit

    misfit = stdio_misfit(parse_args(["serve", "--port", "9000", "--stateless"]))
    assert misfit is not None and misfit.startswith("--port, --stateless only apply to an HTTP server")
    assert stdio_misfit(parse_args(["--data", "sales.csv"])) is None
    assert stdio_misfit(parse_args(["serve", "--transport", "sse", "--port", "9000"])) is None
