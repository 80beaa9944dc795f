"""`python -m service.cli` runs the hebdo command."""

from service.cli import main

main()
