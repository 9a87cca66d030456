"""`python -m khet.service serve|worker|user|token`: the service's commands without the rest of khet."""

from __future__ import annotations

import sys

from khet.service.cli import main

if __name__ == "__main__":
    sys.exit(main())
