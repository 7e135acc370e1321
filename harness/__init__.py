"""opd-harness: a training-free diagnostic of on-policy distillation (see METHOD.md in the docs).

One sub-package per stage of the data flow, each importing only the ones before it (tests/harness/test_layering.py):
``api`` (contracts) < ``storage`` (the run directory's files) < ``sampling`` (models, generation) < ``diagnostic``
(the method's math) < ``reports`` (computing from records) < ``render`` (tables, figures, pages) < ``workflows``
(runs from configuration to records) < ``cli`` (``opd``). ``harness.task``, ``harness.teacher``, ``harness.models``,
``harness.losses`` and the other flat modules only re-export, for plugin files.
"""
__version__ = "0.1.0"
