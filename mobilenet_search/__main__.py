"""``python -m mobilenet_search`` (what ``torchrun -m mobilenet_search`` runs): the ``mobilenet-search`` command."""

import sys

from mobilenet_search.ui.cli import main

if __name__ == "__main__":
    sys.exit(main())
