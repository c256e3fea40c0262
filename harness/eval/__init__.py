"""Evaluation, base vs candidate: vendored benchmarks (bigcode protocols), generation engines
(transformers, vLLM, OpenAI-compatible), lm-eval task definitions, bigcode-evaluation-harness
interop, FIM and HumanEval infilling, and the sandbox that executes generated code."""
