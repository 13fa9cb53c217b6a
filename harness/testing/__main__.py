"""``python -m harness.testing serve``: the virtual Android device, see :mod:`harness.testing.android.serve`."""

import sys

from harness.testing.android.serve import main

sys.exit(main())
