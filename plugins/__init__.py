"""recbench's built-in plugins, by family: datasets/, classic/ (baselines), artwork/ (its non-LLM methods), llm/ (prompting and post-training)."""
