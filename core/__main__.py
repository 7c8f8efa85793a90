"""``python -m anyware ...`` (and ``torchrun ... -m anyware serve ...``): the CLI."""

import sys

from anyware.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
