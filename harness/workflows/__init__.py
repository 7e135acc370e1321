"""One run of each kind from its configuration to its records: the diagnostic over questions, a suite of cells,
the teacher accuracy evaluation and the gradient validation."""
