"""`python -m dlkit`, the same as the `dlkit` command."""

from dlkit.cli import main

if __name__ == "__main__":
    main()
