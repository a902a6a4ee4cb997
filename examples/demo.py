"""``make demo``: the whole job end to end on the local sandbox host.

1. start the sandbox SSH host on 127.0.0.1 (its host key is pinned from its own files),
2. provision it: probe, sync code and data, ``uv sync --frozen`` into the host's venv, self-check,
3. connect exactly as Claude Desktop would (``mcpctl connect demo`` over SSH),
4. ask both tools (top products, a forecast) and show the answers,
5. stop the sandbox (``--keep`` leaves it running, with the profile, for ``mcpctl config claude demo``).

The demo keeps its profile and sandbox under ``.demo/`` in the checkout unless ``MCPCTL_HOME`` is set,
so it never touches your real mcpctl configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
from rich.console import Console

PROFILE = "demo"
ROOT = Path(__file__).resolve().parent.parent


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--operation", default="Dallas", help="operation to ask about (default Dallas)")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running afterwards")
    args = parser.parse_args(argv)
    os.environ.setdefault("MCPCTL_HOME", str(ROOT / ".demo"))

    from examples import mcp_client_ssh
    from provision.errors import McpctlError
    from provision.host import provisioner
    from provision.ssh import sandbox

    err = Console(stderr=True, highlight=False)
    err.rule("[bold]1-2. sandbox host + provision[/bold]")

    def on_phase(phase: str, detail: str) -> None:
        err.print(f"  [green]✓[/green] {phase:<12} {detail}")

    try:
        try:
            result = anyio.run(lambda: provisioner.provision_sandbox(PROFILE, on_phase=on_phase))
        except McpctlError as exc:
            err.print(f"[red]error:[/red] {exc}")
            return 1
        err.print(
            f"profile '{PROFILE}' ready: {result.profile.user}@{result.profile.host}:{result.profile.port}"
        )
        err.rule("[bold]3-4. connect over SSH (mcpctl connect) and ask both tools[/bold]")
        return mcp_client_ssh.main(
            ["--profile", PROFILE, "--operation", args.operation, "--n", "5", "--horizon", "6"]
        )
    finally:
        if args.keep:
            err.print(f"sandbox left running; try `uv run mcpctl config claude {PROFILE} --dry-run`.")
        else:
            err.rule("[bold]5. sandbox down[/bold]")
            sandbox.down()
            err.print("sandbox stopped")


if __name__ == "__main__":
    sys.exit(main())
