"""``opd list WHAT``: the registered tasks, teachers, models, losses or back ends, with their descriptions."""
from __future__ import annotations

import argparse


def register(commands) -> None:
    listing = commands.add_parser("list", help="registered tasks, teachers, models or losses")
    listing.add_argument("what", choices=["tasks", "teachers", "models", "losses", "backends"])
    listing.set_defaults(handler=handle)


def handle(args: argparse.Namespace, console) -> int:
    from rich.markup import escape
    from rich.table import Table

    from harness.api.task import TASKS
    from harness.diagnostic.losses import LOSSES
    from harness.sampling.backends import BACKENDS
    from harness.sampling.models import MODELS
    from harness.sampling.teacher import TEACHERS

    registry = {"tasks": TASKS, "teachers": TEACHERS, "models": MODELS, "losses": LOSSES,
                "backends": BACKENDS}[args.what]
    table = Table(title=f"registered {args.what}")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name in registry.names():
        table.add_row(name, escape(registry.describe(name)))  # descriptions may hold [extras]
    console.print(table)
    return 0
