"""The clock of the "collection in the future" checks (row checks and quality gate)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

# Timestamps are the lab's local wall-clock time, naive (docs/formats.md): a collection is "in the
# future" only when it is later than the latest local time anywhere, UTC now + 14 hours (UTC+14 is
# the easternmost zone; French labs write up to UTC+11, New Caledonia, and UTC+12, Wallis-et-Futuna),
# never against the host's clock or zone (QA: on a UTC host, results collected in Paris in the last
# one or two hours, and a Réunion lab's last four, were quarantined for good)
LATEST_UTC_OFFSET = timedelta(hours=14)


def latest_local_time(now: datetime | None = None) -> datetime:
    """The latest wall-clock time (naive) a lab anywhere can have written at ``now``: UTC + 14 h.
    ``now``: an aware time, or a naive one in the host's zone (as ``datetime.now()``); default the
    current time (``datetime.now(timezone.utc)``)."""
    utc = datetime.now(timezone.utc) if now is None else now.astimezone(timezone.utc)
    return utc.replace(tzinfo=None) + LATEST_UTC_OFFSET
