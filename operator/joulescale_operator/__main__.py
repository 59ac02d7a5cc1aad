"""`python -m joulescale_operator`, the same as `joulescale-operator`."""

import sys

from joulescale_operator.main import main

sys.exit(main())
