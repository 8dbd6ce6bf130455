"""The chaos run: many tasks while workers and the master are killed; `python -m tests.chaos`."""
