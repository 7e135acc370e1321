"""``python -m harness.cli``: the ``opd`` command."""
import sys

from harness.cli.main import main

sys.exit(main())
