"""The engine seam: what the layers above ask of a running service, and the two modes that answer it."""
