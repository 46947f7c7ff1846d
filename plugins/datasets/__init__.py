"""Built-in datasets: MovieLens, user-supplied logs, synthetic data, the artwork simulator and logs."""
