"""The engine seam: what the HTTP layer asks of a running service, and the two modes that answer it."""
