"""`python -m lstmlab` is the `lstmlab` command."""

from .cli import main

main()
