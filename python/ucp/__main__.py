"""`python -m ucp ...` runs the `ucp` executable, as the `ucp` console script does."""
import sys

from ucp._cli import main

sys.exit(main())
