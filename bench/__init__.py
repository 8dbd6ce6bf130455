"""herder's benchmarks: herder and its peers side by side (`python -m bench`, `make bench`).

Every module here but `tasks`, `run`, `scale` and `systems.herder` is stdlib-only (or imports
only its own peer), so that the peers' separate virtualenv can import the package too.
"""
