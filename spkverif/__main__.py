"""Allow `python -m spkverif`."""

from spkverif.cli import main

main()
