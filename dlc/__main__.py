"""`python -m dlc ...` is the `dlc` command."""
from .cli import main

if __name__ == "__main__":
    main()
