"""Allow ``python -m kdbench``."""

from kdbench.cli import main

main()
