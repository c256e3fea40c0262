"""Evaluation: vendored benchmarks, sandboxed execution of generated code, pass@k."""
