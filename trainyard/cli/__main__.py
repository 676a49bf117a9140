"""``python -m trainyard.cli``: the same command as ``trainyard``."""

from trainyard.cli import main

main()
