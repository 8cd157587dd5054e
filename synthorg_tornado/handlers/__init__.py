"""HTTP and WebSocket handlers: thin layers that parse, check roles, call services, render."""
