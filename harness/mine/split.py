"""The temporal split: held-out (test) records are those committed at or after a cutoff date.

The cutoff is a configured date, or the start of the newest `test_fraction` of the history's
time span; the train FIM tree is the last mainline commit before it.
"""

from __future__ import annotations

import bisect
import logging
from datetime import datetime, timezone

from harness.errors import HarnessError

log = logging.getLogger(__name__)
CHANGE_KINDS = ("commit", "pr", "review_fix")


def cutoff(dates: list[str], o: dict) -> str | None:
    """Test = records committed at or after the cutoff: a date, or the first of the (sorted)
    dates in the newest `test_fraction` of their time span (by time, not by count: a history
    busy in its first years would otherwise hold out its last decade), leaving each split at
    least one record."""
    if o.get("test_cutoff"):
        try:
            when = datetime.fromisoformat(str(o["test_cutoff"]))
        except ValueError as e:
            raise HarnessError(f"data.mine.test_cutoff={o['test_cutoff']!r} is not an ISO date. "
                               "Fix: use e.g. 2024-06-01 or 2024-06-01T12:00:00+00:00.") from e
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()
    if len(dates) < 2:
        return None
    first, last = datetime.fromisoformat(dates[0]), datetime.fromisoformat(dates[-1])
    at = (last - (last - first) * float(o["test_fraction"])).isoformat()
    return dates[min(max(bisect.bisect_left(dates, at), 1), len(dates) - 1)]


def report(records: list[dict], cutoff: str | None, o: dict) -> dict:
    """The split's dates and sizes (change records), with a warning when one side is empty or
    tiny (under 5% of the records, or under 10 of them)."""
    sides = {s: sorted(r["committed_at"] for r in records if r["split"] == s and r["kind"] in CHANGE_KINDS)
             for s in ("train", "test")}
    out = {"cutoff": cutoff, "by": "date" if o.get("test_cutoff") else f"newest {o['test_fraction']} of the time span",
           **{s: {"records": len(d), "from": d[0] if d else None, "to": d[-1] if d else None}
              for s, d in sides.items()}}
    total = sum(len(d) for d in sides.values())
    small = [s for s, d in sides.items() if len(d) < max(10, 0.05 * total)]
    if small and total:
        out["warning"] = (f"the {' and '.join(small)} split holds {', '.join(str(len(sides[s])) for s in small)} "
                          f"of {total} change records (cutoff {cutoff}). Fix: set data.mine.test_cutoff to a date, "
                          "or data.mine.test_fraction to another share of the history's time span.")
        log.warning("%s", out["warning"])
    return out


def fim_commit(mainline: list[str], date_of: dict[str, str], cutoff: str | None) -> str:
    """The train FIM tree's commit: the last mainline commit before the cutoff."""
    before = [s for s in mainline if s in date_of and (cutoff is None or date_of[s] < cutoff)]
    return before[-1] if before else mainline[0]
