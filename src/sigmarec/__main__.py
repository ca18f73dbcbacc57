"""``python -m sigmarec ...``: the command line, as the ``sigmarec`` script (also what ``torchrun -m`` runs)."""

import sys

from sigmarec.cli import main

if __name__ == "__main__":
    sys.exit(main())
