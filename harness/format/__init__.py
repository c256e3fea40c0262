"""Format mined records into a tokenized chat + FIM dataset (see `run`)."""

from harness.format.stage import run

__all__ = ["run"]
