"""``mcpctl connect``: the stdio proxy between an MCP client and the server on the host, and its log.

- ``jsonrpc``: JSON-RPC framing (lines, messages, the proxy's own error codes);
- ``ledger``: the session ledger (requests in flight, the queue, the handshake to replay);
- ``replay``: which requests in flight at a drop are sent again to the next server, and how often;
- ``stdio``: the client's side (stdin, and the stdout that carries JSON-RPC only);
- ``link``: the host's side (the SSH connection and each server process on it);
- ``settings``: tunables and the reconnect policy (backoff, when to give up);
- ``proxy``: the :class:`~provision.connect.proxy.Proxy` that ties them together;
- ``main``: the entry point (profile, host start, logging, signals); ``python -m provision.connect``;
- ``log``: the per-profile log file (where it is, ``tail``, ``follow``).
"""
