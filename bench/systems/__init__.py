"""One module per benchmarked system, each with a `System` class that starts it the way its
users do (2 worker processes), runs the workloads' building blocks, and stops it.

`base` and the peers' modules are imported by the peers' virtualenv; `herder` by herder's.
"""
