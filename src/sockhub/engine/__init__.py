"""The engine: the only package that touches sockets."""
