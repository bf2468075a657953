"""``python -m genlowdim ...``: the same command line as ``genlowdim ...`` (e.g. under ``torchrun -m``)."""
import sys

from genlowdim.cli import main

sys.exit(main())
