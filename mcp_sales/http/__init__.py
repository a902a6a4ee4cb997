"""The sales server over HTTP: streamable HTTP and SSE, API keys and OAuth bearer tokens."""
