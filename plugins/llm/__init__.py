"""Built-in LLM methods: zero-shot prompting and the post-training recipes."""
