"""The ``opd`` subcommands, one module each, named after the command (``run``, ``leaderboard``, ``list``, ...).

A module here defines ``register(commands)``, which adds its subparser to ``commands`` (argparse subparsers) with
``set_defaults(handler=...)``; the handler takes ``(args, console)`` and returns an exit code. ``harness.cli.main``
imports every module of this package, so a new command is a new file, with no edit to the CLI itself; a command
never imports ``harness.cli.main`` (the flags commands share live in ``harness.cli.options``).
"""
