"""``python -m tbptt``: the same as the ``tbptt`` command."""

import sys

from tbptt.cli import main

sys.exit(main())
