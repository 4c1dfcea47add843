"""`python -m protein_lm.cli`."""

import sys

from protein_lm.cli import main

sys.exit(main())
