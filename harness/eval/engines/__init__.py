"""Generation engines: token-id prompts in, `Generated` continuations out (`base.Engine`), by
transformers (`hf`), vLLM (`vllm`) or any OpenAI-compatible server (`openai`); `pool` picks,
places and shares them between base and candidate."""
