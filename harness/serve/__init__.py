"""A small OpenAI-compatible server over a local model and its LoRA adapters (`harness serve`).

It makes a local checkpoint, and every adapter trained on it (selected per request by name),
reachable the way a vLLM deployment or a hosted model is: the offline judge, eval's `openai`
engine and editors' completion plugins talk to it over the OpenAI API.
"""
