"""`python -m hdml_ext.cli` (and `torchrun -m hdml_ext.cli`): the `hdml` command."""

import sys

from .main import main

sys.exit(main())
