"""Script file for Syne Tune's LocalBackend (it runs ``python <file> --key value ...``)."""
import sys

from ohgw_bench.trial.trainer import main

if __name__ == "__main__":
    sys.exit(main())
