"""What the machine has: its memory, and byte counts written for people."""

from __future__ import annotations

import os


def format_bytes(n: float) -> str:
    """`1536` -> "1.5 KiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def memory() -> int | None:
    """Physical memory in bytes, or None where the OS does not say (not POSIX)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
