"""``python -m ddlvad`` (and ``torchrun -m ddlvad``) runs the command line."""

import sys

from .cli import main

sys.exit(main())
