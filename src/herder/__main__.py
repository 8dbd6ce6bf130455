"""`python -m herder`: the same as the `herder` command. Imports `cli`."""

from herder.cli import main

main()
