"""The server certificate's expiry, for ``/info`` (and a warning at start-up when it is near)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

WARN_DAYS = 14


class CertificateError(ValueError):
    """The certificate file cannot be read as PEM."""


def certificate_expiry(path: Path) -> dt.datetime:
    """The first certificate's notAfter in ``path`` (PEM), in UTC.

    Raises:
        CertificateError: the file is unreadable or holds no PEM certificate.
    """
    from cryptography import x509

    try:
        pem = path.read_bytes()
        certificate = x509.load_pem_x509_certificate(pem)
    except OSError as exc:
        raise CertificateError(
            f"cannot read the certificate {path} ({exc.strerror}); check the path"
        ) from None
    except ValueError:
        raise CertificateError(
            f"{path} holds no PEM certificate; pass the certificate file with --ssl-certfile"
        ) from None
    return certificate.not_valid_after_utc


def tls_info(certfile: Path | None, now: dt.datetime | None = None) -> dict[str, Any] | None:
    """``{"not_after": ISO date, "days_left": n}`` for ``/info``; None without TLS."""
    if certfile is None:
        return None
    try:
        expiry = certificate_expiry(certfile)
    except CertificateError as exc:
        return {"error": str(exc)}
    now = now or dt.datetime.now(dt.timezone.utc)
    return {"not_after": expiry.isoformat(), "days_left": (expiry - now).days}
