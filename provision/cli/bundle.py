"""``mcpctl bundle NAME [--out FILE]``: the Claude Desktop extension (``.mcpb``) for a profile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provision.cli.common import JsonOpt, emit_json, err, handle_errors


@handle_errors
def bundle(
    name: Annotated[str, typer.Argument(help="The profile the extension connects to.")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the extension (default: ./mcpctl-sales-NAME.mcpb).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a Claude Desktop extension (.mcpb) that runs `mcpctl connect` for profile NAME."""
    from provision.bundle import write_bundle
    from provision.bundle.manifest import extension_name
    from provision.profiles import load_profile

    profile = load_profile(name)
    target = (out or Path(f"{extension_name(profile)}.mcpb")).expanduser().absolute()
    result = write_bundle(profile, target)
    if as_json:
        emit_json(
            {
                "path": str(result.path),
                "size": result.size,
                "name": result.manifest["name"],
                "fingerprints": result.fingerprints,
            }
        )
        return
    err.print(
        f"wrote {result.path} ({result.size / 1024:.0f} kB), pinned to {', '.join(result.fingerprints)}"
    )
    err.print(
        "next: double-click it (or drag it onto Claude Desktop's Settings > Extensions) and fill in host, "
        "user and key file; see docs/CLIENTS.md"
    )
