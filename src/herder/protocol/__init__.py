"""Wire formats, sans I/O, each fact once: the paths (`paths`), HTTP requests (`api`) and
answers (`answers`, with the states), and the worker channel's frames (`frames`); and the
handshake's token kept out of the WebSocket libraries' logs (`redact`)."""
