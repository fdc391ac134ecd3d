"""``python -m edgeprune.cli``: the same as the ``edgeprune`` command."""
from edgeprune.cli import main

main()
