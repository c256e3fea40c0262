"""The LLM judge: rubrics (`rubric`), an OpenAI-compatible client with caching and a budget
(`client`), parsing its replies (`parse`), absolute and pairwise scoring (`scoring`), and how
reliable it is on known answers (`reliability`)."""
