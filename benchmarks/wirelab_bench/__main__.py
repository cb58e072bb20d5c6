"""``python -m wirelab_bench``: the same as the ``wirelab-bench`` console script."""

import os
import sys

from .cli import main

os.environ.setdefault("PYTHONUNBUFFERED", "1")
sys.exit(main())
