"""Runnable examples: an MCP client and a Gemini chat that reach the sales server (locally or over SSH)."""
