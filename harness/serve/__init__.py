"""A small OpenAI-compatible server over a local model and its LoRA adapters.

Evaluation talks to models only through the OpenAI API, so the same code scores a local
checkpoint, a vLLM deployment or a hosted judge; this server is what makes a local checkpoint
(and every adapter trained on it, selected per request by name) reachable that way offline.
"""
