"""Allow ``python -m deit`` (and ``torchrun -m deit``)."""

import sys

from deit.cli import main

sys.exit(main())
