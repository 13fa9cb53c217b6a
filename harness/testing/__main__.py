"""``python -m harness.testing serve``: see :mod:`harness.testing.serve`."""

import sys

from harness.testing.serve import main

sys.exit(main())
