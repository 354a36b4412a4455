"""`python -m lstmlab` (also what torchrun launches)."""

from lstmlab.cli import main

if __name__ == "__main__":
    main()
