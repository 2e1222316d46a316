"""python -m memsim: the same as the memsim command."""
import sys

from .cli import main

sys.exit(main())
