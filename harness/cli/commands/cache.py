"""``opd cache [--clear] [--cache-dir DIR]``: where the reuse cache is, how big it is, and clearing it."""
from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    parser = commands.add_parser("cache", help="size and location of the reuse cache (--clear empties it)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $OPD_WORK_CACHE_DIR or ~/.cache/opd-harness/work")
    parser.add_argument("--clear", action="store_true", help="delete every entry (runs' records are untouched)")
    parser.set_defaults(handler=handle)


def handle(args, console) -> int:
    from harness.storage.cache import WorkCache

    cache = WorkCache(args.cache_dir)
    entries = list(cache.entries())
    sampled = sum(1 for path in entries if path.parent.name == "sampled") // 2  # two files per question
    rows = sum(1 for path in entries if path.parent.name == "teacher")
    console.print(f"Reuse cache {cache.root}: {sampled} question(s) of sampled work, {rows} teacher row set(s), "
                  f"{cache.size_bytes() / 2**20:.1f} MiB.", highlight=False)
    if args.clear:
        console.print(f"Removed {cache.clear()} file(s).")
    return 0
