"""``python -m p2pvision.cli``: the ``p2pvision`` command."""

import sys

from p2pvision.cli import main

sys.exit(main())
