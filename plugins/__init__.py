"""recbench's built-in plugins: datasets and methods, registered through the public hooks."""
