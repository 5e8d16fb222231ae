"""`python -m backend ARGS` is the `irodori` command (torchrun and the plugins start it this way)."""
import sys

from backend.tools.cli import main

sys.exit(main())
