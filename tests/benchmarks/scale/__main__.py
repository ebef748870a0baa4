"""``python -m tests.benchmarks.scale``: run the scale benchmark."""

import sys

from tests.benchmarks.scale.runner import main

sys.exit(main())
