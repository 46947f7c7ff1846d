"""Built-in classic recommenders: popularity, matrix factorisation, graph and sequential models."""
