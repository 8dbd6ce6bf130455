"""`python -m tests.chaos --seed 1 --duration 300`: the chaos run on its own (see run.py)."""

import sys

from tests.chaos.run import main

sys.exit(main())
