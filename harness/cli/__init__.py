"""The ``opd`` command line: the main parser with ``run``, ``leaderboard`` and ``list``, shared flags, plugin
discovery, and one module per further subcommand in ``commands``."""
