"""``python -m aggregator.cli``: the same as the ``jeisson-aggregator`` command."""

import sys

from aggregator.cli import main

sys.exit(main())
