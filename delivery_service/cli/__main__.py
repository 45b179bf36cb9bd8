"""`python -m delivery_service.cli ...`: the command-line client (also installed as `delivery`)."""

from delivery_service.cli.app import main

main()
