"""Built-in non-LLM methods of the artwork task: the most chosen artwork and the production choice model."""
