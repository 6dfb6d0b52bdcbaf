"""``python -m flowmatch`` (and ``torchrun -m flowmatch train ...``) runs the command line."""

from flowmatch.cli import main

main()
