"""``python -m geomot.cli``: the ``geomot`` command (used by ``torchrun ... -m geomot.cli``)."""

import sys

from geomot.cli import main

sys.exit(main())
