"""authgate: a standalone OAuth 2.1 authorization server for MCP clients and servers."""

__version__ = "0.1.0"
