"""Progress bars (harness.render.progress): one bar per kind, totals that add up across announcements, nothing
drawn before the first work (so an early configuration error prints alone)."""
from __future__ import annotations

import io

from rich.console import Console

from harness.render.progress import RichProgress


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=120), out


def test_totals_add_up_and_each_kind_has_its_bar():
    screen, out = console()
    with RichProgress(kinds=("questions", "rollouts"), console=screen) as progress:
        progress.add_total("questions", 3)
        progress.add_total("questions", 2)
        progress.add_total("rollouts", 8)
        progress.advance("questions", 4)
        progress.advance("rollouts")
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert any(line.startswith("questions") and "4/5" in line for line in lines)
    assert any(line.startswith("rollouts") and "1/8" in line for line in lines)


def test_nothing_is_drawn_without_work():
    screen, out = console()
    with RichProgress(console=screen):
        pass
    assert out.getvalue() == ""
