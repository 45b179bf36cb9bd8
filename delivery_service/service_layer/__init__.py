"""The application service under every front door: REST routes, MCP tools and AG-UI runs ask it alike."""
