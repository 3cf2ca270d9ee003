"""``python -m clinvk.cli``."""

from . import main

main()
