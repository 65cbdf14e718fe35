"""Model management: the catalog of models and their states, loads, unloads, and Hugging Face Hub search."""
