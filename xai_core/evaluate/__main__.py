"""``python -m xai_core.evaluate``: see :mod:`xai_core.evaluate`."""

import sys

from xai_core.evaluate.cli import main

sys.exit(main())
