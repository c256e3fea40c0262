"""Export a merged candidate for llama.cpp / Ollama (GGUF + Modelfile) and vLLM, verified
against the merged model after conversion (`harness export`)."""
