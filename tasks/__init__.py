"""Built-in task adapters; each module registers one task."""
