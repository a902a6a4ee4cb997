"""The plain MCP client over streamable HTTP: the same questions as ``mcp_client_ssh``, to a server
run with ``mcp-sales serve --transport streamable-http``::

    export MCP_API_KEY=...                  # the server's key, or an OAuth access token
    python -m examples.mcp_client_http --url https://sales.example.com/mcp --operation Dallas --n 5
    python -m examples.mcp_client_http --url http://127.0.0.1:8000/mcp --horizon 0

The key goes in ``Authorization: Bearer``; ``--api-key`` overrides ``$MCP_API_KEY`` (but shows in the
process list). A key is never sent over plain http to another host: use https, or an SSH tunnel and
a localhost URL. Output and exit codes are those of ``mcp_client_ssh`` (3 when the server cannot be
reached or refuses the key).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from examples import mcp_client_ssh
from examples._transport import add_http_options


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``--url``/``--api-key`` and the timeouts, plus the questions to ask."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.mcp_client_http", description=mcp_client_ssh.DESCRIPTION
    )
    add_http_options(parser)
    mcp_client_ssh.add_question_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example over HTTP; the exit codes are those of :func:`examples.mcp_client_ssh.main`."""
    return mcp_client_ssh.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
