"""A threshold suggestion for one camera from the events people reviewed (pure functions, no I/O).

An event is silenced by threshold ``t`` when its peak score is at most ``t`` (frames fire when their
score is *above* the threshold, so no frame of such an event would have). The suggestion is the
smallest threshold that silences every reviewed false alarm, with a small margin: the highest
false-alarm peak times ``1 + margin``. It is refused, with the reason, when

- fewer than ``min_false_alarms`` false alarms have been reviewed (one bad evening is no pattern),
- it would also silence an event a person confirmed (the two overlap: no threshold separates them),
- the threshold in force already silences every reviewed false alarm (nothing to gain).

Even when refused, :class:`Suggestion` carries the candidate value and what it would silence, so the
page can show the reason next to the numbers. Nothing here applies anything: the web page applies a
suggestion only when the user asks (``POST /api/cameras/{name}/threshold``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

MIN_FALSE_ALARMS = 3
"""Fewest reviewed false alarms of a camera before a threshold is suggested."""
MARGIN = 0.01
"""Relative margin above the highest false-alarm peak (0.01: 1 % above it)."""


@dataclass(frozen=True)
class Suggestion:
    """A suggested threshold for one camera, or the reason there is none."""

    value: float | None
    """The suggested threshold; None when refused (see :attr:`refused`)."""
    refused: str | None
    """Why there is no suggestion (one sentence), or None."""
    candidate: float | None
    """Highest false-alarm peak times ``1 + margin`` (None without any reviewed false alarm): the value
    that would be suggested if nothing refused it."""
    current: float | None
    """The threshold in force (None: unknown)."""
    false_alarms: int
    """Reviewed false alarms considered."""
    confirmed: int
    """Confirmed events considered."""
    highest_false_alarm: float | None
    """Highest peak score among the false alarms."""
    lowest_confirmed: float | None
    """Lowest peak score among the confirmed events."""
    silenced: dict[str, int] = field(default_factory=dict)
    """Events :attr:`candidate` would have silenced: ``false_alarm``, ``confirmed``, ``unreviewed``
    (of those given) and ``total``."""
    blocking: list[int] = field(default_factory=list)
    """Ids of the confirmed events :attr:`candidate` would silence (why it was refused)."""

    def as_dict(self) -> dict:
        """Plain JSON-ready dict (field names as keys)."""
        return asdict(self)


def candidate_threshold(false_alarm_peaks: Iterable[float], margin: float = MARGIN) -> float | None:
    """Just above the highest of ``false_alarm_peaks``: ``max * (1 + margin)``, at least the next float
    above ``max`` (so that a peak of 0 is silenced too). None when there are none."""
    peaks = [float(p) for p in false_alarm_peaks]
    if not peaks:
        return None
    highest = max(peaks)
    return max(highest * (1.0 + margin), math.nextafter(highest, math.inf))


def silenced_by(events: Iterable[Mapping], threshold: float) -> dict[str, int]:
    """How many of ``events`` (mappings with ``peak_score`` and ``review``) a threshold would silence
    (peak score <= ``threshold``), by review: ``false_alarm``, ``confirmed``, ``unreviewed``, ``total``."""
    out = {"false_alarm": 0, "confirmed": 0, "unreviewed": 0}
    for event in events:
        if event["peak_score"] <= threshold:
            out[event["review"] or "unreviewed"] += 1
    out["total"] = sum(out.values())
    return out


def suggest_threshold(events: Iterable[Mapping], current: float | None = None, *,
                      min_false_alarms: int = MIN_FALSE_ALARMS, margin: float = MARGIN) -> Suggestion:
    """The threshold suggestion from one camera's ``events`` (mappings with ``id``, ``peak_score`` and
    ``review``: ``"false_alarm"``, ``"confirmed"`` or None); ``current``: the threshold in force.

    Unreviewed events do not move the suggestion; they are only counted in ``silenced``. See the module
    docstring for when it is refused."""
    events = list(events)
    false_alarms = [e for e in events if e["review"] == "false_alarm"]
    confirmed = [e for e in events if e["review"] == "confirmed"]
    value = candidate_threshold([e["peak_score"] for e in false_alarms], margin)
    common = {"candidate": value, "current": current, "false_alarms": len(false_alarms), "confirmed": len(confirmed),
              "highest_false_alarm": max((e["peak_score"] for e in false_alarms), default=None),
              "lowest_confirmed": min((e["peak_score"] for e in confirmed), default=None)}
    if value is None or len(false_alarms) < min_false_alarms:
        return Suggestion(None, f"{len(false_alarms)} reviewed false alarm(s); at least {min_false_alarms} are needed "
                                f"before a threshold is suggested", **common)
    silenced = silenced_by(events, value)
    blocking = sorted(e["id"] for e in confirmed if e["peak_score"] <= value)
    if blocking:
        return Suggestion(None, f"{value:.6g} would also silence {len(blocking)} confirmed event(s) (lowest peak "
                                f"{common['lowest_confirmed']:.6g}): false alarms and confirmed events overlap",
                          silenced=silenced, blocking=blocking, **common)
    if current is not None and current >= value:
        return Suggestion(None, f"the threshold in force ({current:.6g}) already silences every reviewed false alarm",
                          silenced=silenced, **common)
    return Suggestion(value, None, silenced=silenced, **common)
