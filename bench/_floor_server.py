"""The start-up floor: an MCP server built with the SDK alone, no tools, no data (benchmark baseline).

Run as a script: ``python bench/_floor_server.py``. Nothing can start faster than this on the same
interpreter, so it is the denominator of the start-up ratio.
"""

from __future__ import annotations

from mcp.server import MCPServer


def main() -> None:
    MCPServer("floor").run()


if __name__ == "__main__":
    main()
