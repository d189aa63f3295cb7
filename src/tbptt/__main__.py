"""``python -m tbptt``: the same as the ``tbptt`` command."""

import sys

from tbptt.cli.main import main

sys.exit(main())
