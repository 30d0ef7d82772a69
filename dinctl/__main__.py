"""`python -m dinctl` (and `torchrun -m dinctl`)."""

from dinctl.cli.main import main

if __name__ == "__main__":
    main()
