"""dinctl: Deep Interest Network CTR models, from raw public logs to the paper's tables."""

__version__ = "0.1.0"
