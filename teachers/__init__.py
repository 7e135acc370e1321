"""Built-in teachers; each module registers one teacher (or one family, such as ``model:<spec>``)."""
