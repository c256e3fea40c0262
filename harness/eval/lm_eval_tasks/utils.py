"""lm-eval loads the functions its task YAMLs name (``!function utils.x``) from this file; they
live in harness.eval.lmeval, so the tasks and the harness share one implementation."""

from harness.eval.lmeval import (  # noqa: F401
    humaneval_dataset,
    keep_samples,
    mbpp_dataset,
    process_humaneval,
    process_mbpp,
)
