"""Extra ``opd`` subcommands, one module each.

A module here defines ``register(commands)``, which adds its subparser to ``commands`` (argparse subparsers) with
``set_defaults(handler=...)``; the handler takes ``(args, console)`` and returns an exit code. ``harness.cli.main`` imports
every module of this package, so a new command is a new file, with no edit to the CLI itself.
"""
