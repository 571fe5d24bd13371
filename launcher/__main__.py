"""``python -m launcher`` is the ``estate`` command."""

from launcher.cli import main

main()
