"""`python -m gateway` is the `trapgate` command."""

import sys

from gateway.cli import main

sys.exit(main())
