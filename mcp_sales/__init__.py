"""mcp_sales: a stdio MCP server for sales analytics (top products, Prophet forecasts)."""

__version__ = "0.1.0"
