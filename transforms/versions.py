"""Which versions of a result are current: the rows that share a ``version_key`` (lab, request,
test, specimen) are sorted into results, each with its history.

Rows sharing a version key are not always versions of one result (QA): a glucose tolerance test
sends the same test three times in one request; a lab whose request numbers restart every day, or
were reused, sends the same request and test for another patient or another day. So:

- a row with status F (final) or X (not obtained) continues a result only when it is a delivery of
  it again: the same person and collection day, from another file. The k-th such row of a file
  continues the k-th result (the order of a tolerance test's measurements), and a row of another
  person or day is a result of its own;
- a row with status C (correction) or D (deletion) corrects a result: the latest-touched one of the
  same person and day, else of the same person (a corrected date), else of the same day (a
  corrected identity); with none (the original was never delivered) it stands alone;
- a result's latest row is current unless its status is D; its earlier rows name it in
  ``superseded_by``.

Rows are taken in the order of their versions: validation time (a row without one is placed after
the latest validation delivered before it, ``placed_at``), then delivery (file_seq), then row.
"""

from __future__ import annotations

import polars as pl

REPLACING = ("C", "D")


def settle(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows``: version_key, file_id, result_no, file_seq, placed_at, result_status, person_key,
    collected_date. Returns file_id, result_no, is_current, superseded_by (``file_id:result_no``
    of the result's current row, null for that row), one row per input row."""
    r = rows.sort(["version_key", "placed_at", "file_seq", "result_no"], nulls_last=False)
    keys = r["version_key"].to_list()
    files = r["file_id"].to_list()
    nos = r["result_no"].to_list()
    status = r["result_status"].to_list()
    persons = r["person_key"].to_list()
    days = r["collected_date"].to_list()
    n = len(keys)
    current: list[bool] = [False] * n
    superseded: list[str | None] = [None] * n
    start = 0
    while start < n:
        end = start
        while end < n and keys[end] == keys[start]:
            end += 1
        for members in _results(range(start, end), files, status, persons, days):
            head = members[-1]
            current[head] = status[head] != "D"
            head_id = f"{files[head]}:{nos[head]}"
            for m in members[:-1]:
                superseded[m] = head_id
        start = end
    return pl.DataFrame({"file_id": files, "result_no": nos, "is_current": current, "superseded_by": superseded},
                        schema={"file_id": pl.Utf8, "result_no": r.schema["result_no"], "is_current": pl.Boolean,
                                "superseded_by": pl.Utf8})


def _results(order, files, status, persons, days) -> list[list[int]]:
    """The rows of one version key (indexes, in version order) grouped into results."""
    results: list[dict] = []  # person, day, files, members, touched
    for tick, k in enumerate(order):
        person, day = persons[k], days[k]
        if status[k] in REPLACING:
            target = (_latest(results, lambda c: c["person"] == person and c["day"] == day)
                      or _latest(results, lambda c: c["person"] == person)
                      or _latest(results, lambda c: c["day"] == day))
        else:
            target = next((c for c in results if c["person"] == person and c["day"] == day
                           and files[k] not in c["files"]), None)
        if target is None:
            target = {"files": set(), "members": []}
            results.append(target)
        target["person"], target["day"] = person, day  # a correction's identity and day are the result's now
        target["files"].add(files[k])
        target["members"].append(k)
        target["touched"] = tick
    return [c["members"] for c in results]


def _latest(results: list[dict], match) -> dict | None:
    best = None
    for c in results:
        if match(c) and (best is None or c["touched"] > best["touched"]):
            best = c
    return best
