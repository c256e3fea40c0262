"""Evaluation, base vs candidate on identical prompts: the tasks (HumanEval/MBPP through
lm-eval or bigcode protocols, FIM on held-out code, the LLM judge's comparison), registered
once in `tasks/`, and the stage that runs them; generation engines live in `engines/`, code
execution in `harness.sandbox`, the judge itself in `harness.judge`."""
