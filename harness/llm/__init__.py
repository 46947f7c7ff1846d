"""The LLM toolkit: backends (local transformers, OpenAI-compatible HTTP), a result cache, prompts.

Import the submodules you need; this package imports neither torch nor transformers, so
``recbench list`` stays fast. Start with :func:`recbench.llm.models.load_backend`.
"""
