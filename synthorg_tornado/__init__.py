"""synthorg-tornado: the multi-user layer of a lab server, on Tornado."""

__version__ = "0.1.0"
