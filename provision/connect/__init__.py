"""``mcpctl connect``: JSON-RPC framing, the session ledger, the local stdio side, the proxy, its log."""
