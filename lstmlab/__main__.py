"""`python -m lstmlab` (also what torchrun launches)."""

from lstmlab.cli.app import main

if __name__ == "__main__":
    main()
