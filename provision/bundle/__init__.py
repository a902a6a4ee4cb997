"""``mcpctl bundle NAME``: a Claude Desktop extension (MCP Bundle, ``.mcpb``) that runs ``connect``.

:mod:`provision.bundle.manifest` says what the extension is (its manifest and the settings form),
:mod:`provision.bundle.pack` writes the archive, :mod:`provision.bundle.launch` is what runs inside it
on the user's machine, and :mod:`provision.bundle.icon` draws its icon.
"""

from __future__ import annotations

from provision.bundle.pack import BundleResult, write_bundle

__all__ = ["BundleResult", "write_bundle"]
