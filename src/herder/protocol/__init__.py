"""Wire formats, sans I/O: worker-channel frames (`frames`) and HTTP schemas (`api`)."""
