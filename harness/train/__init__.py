"""Train a LoRA/QLoRA adapter on the formatted dataset (see `run`)."""

from harness.train.stage import run

__all__ = ["run"]
