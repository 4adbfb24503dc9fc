"""``python -m ohgw_bench.cli``."""
import sys

from .main import main

sys.exit(main())
