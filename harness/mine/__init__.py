"""Mine a git repository into training records (see `run`)."""

from harness.mine.stage import run

__all__ = ["run"]
