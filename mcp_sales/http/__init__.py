"""MCP over HTTP: streamable HTTP at ``/mcp`` or legacy SSE at ``/sse``, with API keys or OAuth bearer
tokens, ``/health`` and ``/info``, request limits, TLS and an access log (``mcp-sales serve --transport``).

Nothing here is imported by the stdio server: ``mcp_sales.__main__`` imports this package only when an
HTTP transport is asked for.
"""
