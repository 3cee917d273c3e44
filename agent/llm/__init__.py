"""The language model: MLX backend, model catalog, the bundled demo model and tool-call parsing."""
