"""`python -m backend.tools.bench CHILD_JSON`: one benchmark scenario in a fresh interpreter (see children.py)."""
import sys

from .children import child_main

sys.exit(child_main(sys.argv[1:]))
