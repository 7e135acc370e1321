"""One run of each kind from its configuration to its records: the diagnostic over questions (``runner``), a suite
of cells (``suite``), the teacher accuracy evaluation (``accuracy``), the gradient validation (``validate``), and the
plugin discovery each of them starts with (``plugins``)."""
