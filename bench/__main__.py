"""`python -m bench`: the benchmark driver (see `bench.run`)."""

from bench.run import main

raise SystemExit(main())
