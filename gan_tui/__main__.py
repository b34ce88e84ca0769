"""`python -m gan_tui` runs the gan-tui command line."""

import sys

from gan_tui.cli import main

sys.exit(main())
