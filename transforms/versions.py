"""Which versions of a result are current: the rows that share a ``version_key`` (lab, request,
test) are sorted into results, each with its history.

Rows sharing a version key are not always versions of one result (QA): a glucose tolerance test
sends the same test several times in one request; a lab whose request numbers restart every day, or
were reused, sends the same request and test for another patient or another day. So a row is
compared with the results already formed, in version order:

- *the same person*: the same ``person_key``, or the same ``link_key`` (names and birth date: a
  re-delivery that adds the INS is the same person);
- *the specimens agree*: equal, or one of them states none (an OBX without specimen beside the
  embedded CDA that states it); two specimens stated and different (blood and urine leucocytes of
  one request) are two results.

Two rows of one message (the same ``message_key``; rows without one, HPRIM's, in one file) are two
results when both state an observation sub-ID (HL7/HPRIM OBX-4: with OBX-3 it identifies an
observation in its order, HL7 v2.5 7.4.2.4: an antibiogram's isolate 1 and 2), or both an own time
(``observed_at``: OBX-14, a CDA observation's effectiveTime: a tolerance test's T0 and T120), and
these differ (own times by 5 minutes or more, :data:`SAME_OBSERVATION`: a message sent again in the
file with its OBX-14 stamped again seconds later is that result again, QA regr F5), whatever their values (QA fmt F1: an isolate's susceptibility, a time point of equal
value, were taken for the other again). A row that states none is not told apart so (the rows of a
CDA embedded beside the OBX segments, which the HL7 parser gives no own time: the Ségur copy).
Across messages these only guide the choice among results that fit otherwise (a re-delivery or a
correction stating the sub-ID or time of one of them), never part them: a sender may number
sub-IDs per message, or restate an analysis time.

A row with status F (final) or X (not obtained), of the same person and collection day as a result:

- from another file, continues it (a delivery again): the result collected at the same time if
  one is, else the first one this file has not continued yet (the k-th row continues the k-th
  result: a tolerance test re-delivered whole);
- from the file of the result's latest row, continues it when it says the same at the same
  collection time, or with one of the two times unstated (a Ségur message carries each result both
  as an OBX and inside its embedded CDA: docs/formats.md), or when it was collected at the same time
  and validated later (a cumulative extract holding a result and its re-validation); otherwise it is
  another measurement (a tolerance test: several values collected at different times, equal or not
  -- QA: 5,0 at 08:00 and 5,0 again at 10:00 were one result --, or at one time with different
  values);
- otherwise it is a result of its own.

A row with status C (correction) or D (deletion) corrects, the first of these that exists:

1. a result of the same person collected at the same time (a plain correction);
2. a result of another person collected at the same time (a corrected identity);
3. a result of the same person collected the same day (a corrected time, or no time stated);
4. a result of another person collected the same day (a corrected identity, no time stated);
5. the result of the same person collected the nearest day (a corrected date), only when that
   result can be the same specimen and the row's own day holds nothing of its request and test:

   - not when the row's collection day is after the day that result was already received or
     validated (a specimen is not collected after it was analysed: with request numbers
     restarting every day, it is the next day's request; QA F1: a correction of the 20/11 sample
     of request R1 replaced the same person's 19/11 positive, validated 19/11, of another R1);
   - not when an original of the row's request and test collected on the row's own day was
     delivered and quarantined (``own_day_quarantined``: the correction is that result's, sent
     again valid, and stands alone, as quality.quarantine_settled pairs them).

   A correction or deletion that did move a result to another day is counted by the quality gate
   (``n_versions_moved_day``, a warning: quality/summaries.py), so it is never silent.

A *late* correction or deletion, validated more than :data:`MAX_VALIDATION_DELAY` after its own
collection, may retract a result of more than a year ago (QA cal F5: the row checks let it pass,
quality/schemas.py), but its collection date may as well be a mistyped year: it corrects only a
result collected the same day (1 to 4 above), never moves one to another day, and one that corrects
nothing is not current (QA regr F1: a correction dated a year early moved a current positive a
year back, and one without its original added a year-old positive). The gate counts those
(``n_corrections_unmatched``, a warning).

A collection time or day shared with the row comes before the same person's other days: with
request numbers restarting every day (or reused), the same number on another day is another
request (QA: a correction giving the 03/11 sample of request 1 to Benoit replaced Benoit's own
02/11 positive instead of the 03/11 result collected at that very time). Several candidates: the
first this file has not corrected yet (so the corrections of a tolerance test's measurements go one
to each), else the latest touched. With none (the original was never delivered, or both the
identity and the day changed) it stands alone.

A deletion sent without a collection date (a D needs none: quality/schemas.py) deletes the
person's result of that request and test when there is exactly one; with several (a tolerance
test, a daily request number) or none, it stands alone and deletes nothing: it stays in the
warehouse, and the quality gate warns about every deletion that deleted nothing
(``n_deletions_unmatched``, quality/summaries.py).

A result's latest row is current unless its status is D; its earlier rows name it in
``superseded_by``. Rows are taken in the order of their versions: ``placed_at``, then delivery
(file_seq), then row. ``placed_at`` (flows/publish.py) is the validation time; a row without one is
placed after the latest validation delivered before it, and a correction or deletion never before
an original it may correct (QA: an undated C or D delivered before its original was undone by it):

- an undated C or D is placed after every F of its version key as well, whatever the delivery
  order, and after the rows placed at the same time (``undated_replacement``); several of them
  keep their delivery order;
- an undated F is placed after the validations delivered before it of rows that are not C or D: an
  original sent again (a cumulative extract) does not undo the correction that came before it;
- a C or D with a validation time keeps its place in time (validated before the original, it is
  an earlier version).
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

REPLACING = ("C", "D")
MAX_VALIDATION_DELAY = timedelta(days=366)  # the slowest cultures take weeks; a year more is an error


def late_replacement_expr() -> pl.Expr:
    """A correction or deletion validated more than :data:`MAX_VALIDATION_DELAY` after its own
    collection (null dates: not late)."""
    return (pl.col("result_status").is_in(REPLACING)
            & ((pl.col("validated_at") - pl.col("collected_at")) > MAX_VALIDATION_DELAY)).fill_null(False)


def late_replacement_sql() -> str:
    """:func:`late_replacement_expr` in DuckDB's SQL."""
    micros = int(MAX_VALIDATION_DELAY.total_seconds()) * 1_000_000
    return (f"coalesce(result_status IN ('C', 'D') AND epoch_us(validated_at) - epoch_us(collected_at) > {micros}, "
            "false)")


def settle(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows``: version_key, file_id, result_no, file_seq, placed_at, result_status, person_key,
    collected_date, and optionally link_key, collected_at, specimen, undated_replacement, the
    value (value_num, value_comparator, result_class, value_raw), received_at, validated_at,
    message_key, observation_sub_id, observed_at and own_day_quarantined (a column absent is null).
    Returns file_id, result_no, is_current, superseded_by (``file_id:result_no`` of the result's current
    row, null for that row), one row per input row."""
    late = (pl.col("undated_replacement").fill_null(False) if "undated_replacement" in rows.columns
            else pl.lit(False))
    r = rows.with_columns(late.alias("_late")).sort(
        ["version_key", "placed_at", "_late", "file_seq", "result_no"], nulls_last=False)

    def col(name: str, dtype=pl.Utf8) -> list:
        return (r[name] if name in r.columns else pl.Series([None] * r.height, dtype=dtype)).to_list()

    rows_of = _Rows(
        files=col("file_id"), status=col("result_status"), persons=col("person_key"), links=col("link_key"),
        days=col("collected_date", pl.Date), times=col("collected_at", pl.Datetime("us")),
        placed=col("placed_at", pl.Datetime("us")),
        # the first day the row says its specimen existed: received or validated (day precision)
        seen=_first_seen(r),
        quarantined=[bool(v) for v in col("own_day_quarantined", pl.Boolean)],
        specimens=(r["specimen"].str.strip_chars().str.to_uppercase().replace("", None) if "specimen" in r.columns
                   else pl.Series([None] * r.height, dtype=pl.Utf8)).to_list(),
        values=r.with_columns(_value_expr(r.columns))["_value"].to_list(),
        messages=col("message_key"),
        late=(r.select(late_replacement_expr()).to_series().to_list()
              if {"validated_at", "collected_at"} <= set(r.columns) else [False] * r.height),
        subs=(r["observation_sub_id"].cast(pl.Utf8).str.strip_chars().replace("", None)
              if "observation_sub_id" in r.columns else pl.Series([None] * r.height, dtype=pl.Utf8)).to_list(),
        observed=col("observed_at", pl.Datetime("us")))
    keys = r["version_key"].to_list()
    nos = r["result_no"].to_list()
    n = len(keys)
    current: list[bool] = [False] * n
    superseded: list[str | None] = [None] * n
    start = 0
    while start < n:
        end = start
        while end < n and keys[end] == keys[start]:
            end += 1
        for members, orphan in _results(range(start, end), rows_of):
            head = members[-1]
            # a result that late corrections alone formed corrected nothing: not a result of its own
            current[head] = rows_of.status[head] != "D" and not orphan
            head_id = f"{rows_of.files[head]}:{nos[head]}"
            for m in members[:-1]:
                superseded[m] = head_id
        start = end
    return pl.DataFrame({"file_id": rows_of.files, "result_no": nos, "is_current": current, "superseded_by": superseded},
                        schema={"file_id": pl.Utf8, "result_no": r.schema["result_no"], "is_current": pl.Boolean,
                                "superseded_by": pl.Utf8})


def _first_seen(r: pl.DataFrame) -> list:
    """Per row, the day its specimen was first said to exist: received or validated (null when neither)."""
    cols = [pl.col(c).cast(pl.Datetime("us")).dt.date() for c in ("received_at", "validated_at") if c in r.columns]
    return r.select(pl.min_horizontal(cols)).to_series().to_list() if cols else [None] * r.height


class _Rows:
    def __init__(self, **columns: list):
        self.__dict__.update(columns)


def _value_expr(columns: list[str]) -> pl.Expr:
    """What a row says, comparable across formats: the number (with its comparator), else the
    qualitative class, else the text as sent (trimmed, upper case); null when there is none."""
    def col(name: str, dtype) -> pl.Expr:
        return pl.col(name) if name in columns else pl.lit(None, dtype=dtype)

    number = pl.concat_str([col("value_comparator", pl.Utf8).fill_null(""),
                            col("value_num", pl.Float64).cast(pl.Utf8)])
    return pl.coalesce(number, col("result_class", pl.Utf8),
                       col("value_raw", pl.Utf8).str.strip_chars().str.to_uppercase()).alias("_value")


class _Result:
    __slots__ = ("persons", "links", "day", "time", "specimen", "files", "members", "touched", "seen", "sub",
                 "observed", "orphan")

    def __init__(self) -> None:
        self.persons: set = set()
        self.links: set = set()
        self.files: set = set()
        self.members: list[int] = []
        self.specimen = self.day = self.time = self.seen = self.sub = self.observed = None
        self.touched = -1
        self.orphan = True  # until a row other than a late correction or deletion is one of its versions


def _results(order, rows: _Rows) -> list[tuple[list[int], bool]]:
    """The rows of one version key (indexes, in version order) grouped into results, each with
    whether only late corrections or deletions formed it (``orphan``: it corrected nothing)."""
    results: list[_Result] = []
    for tick, k in enumerate(order):
        file, day, time, specimen = rows.files[k], rows.days[k], rows.times[k], rows.specimens[k]

        def same_person(c: _Result) -> bool:
            return rows.persons[k] in c.persons or (rows.links[k] is not None and rows.links[k] in c.links)

        fits = [c for c in results if specimen is None or c.specimen is None or c.specimen == specimen]
        if rows.status[k] in REPLACING:
            mine = [c for c in fits if same_person(c)]
            others = [c for c in fits if not same_person(c)]
            target = None
            # exact collection time (same person, then another: a corrected identity), then the same
            # day (same person, then another), then the same person's nearest day (a corrected
            # date): with a daily-restarting request number, the same number on another day is
            # another request, so a match in time or day beats the same person's other day (QA)
            timed = time is not None
            # another day only for a specimen that can be this one (collected no later than the
            # day that result was received or validated), and not when an original of this day
            # was delivered and quarantined: with a daily request number it is another request (QA F1)
            moved = [] if rows.quarantined[k] or rows.late[k] else _nearest(
                [c for c in mine if c.seen is None or day is None or day <= c.seen], day)
            for pool in ([c for c in mine if timed and c.time == time], [c for c in others if timed and c.time == time],
                         [c for c in mine if day is not None and c.day == day],
                         [c for c in others if day is not None and c.day == day], moved):
                target = _pick(_agreeing(pool, k, rows), file)
                if target is not None:
                    break
            if day is None:
                # a deletion without a collection date: the person's only result of this request
                # and test, else (several, or none) it stands alone, deleting nothing (the gate warns)
                dated = [c for c in mine if c.day is not None]
                target = dated[0] if len(dated) == 1 else None
        else:
            same = [c for c in fits if same_person(c) and c.day == day]
            elsewhere = _agreeing([c for c in same if file not in c.files], k, rows)
            target = (next((c for c in elsewhere if time is not None and c.time == time), None)
                      or (elsewhere[0] if elsewhere else None))
            if target is None:
                for c in same:
                    last = c.members[-1]
                    if rows.files[last] != file or any(_told_apart(k, j, rows) for j in c.members):
                        continue
                    # the same value is that result again only at the same collection time (or
                    # one unstated): a tolerance test can measure the same value twice (QA)
                    if (rows.values[k] is not None and rows.values[last] == rows.values[k]
                            and (time is None or c.time is None or c.time == time)) or (
                            time is not None and c.time == time and rows.placed[last] is not None
                            and rows.placed[k] is not None and rows.placed[k] > rows.placed[last]):
                        target = c
                        break
        if target is None:
            target = _Result()
            results.append(target)
        # a correction's identity, day and time are the result's now (its earlier ones still match)
        target.persons.add(rows.persons[k])
        if rows.links[k] is not None:
            target.links.add(rows.links[k])
        if day is not None:  # a deletion without a date leaves the result's day as it was
            target.day, target.time = day, time
        target.specimen = specimen if specimen is not None else target.specimen
        target.sub = rows.subs[k] if rows.subs[k] is not None else target.sub
        target.observed = rows.observed[k] if rows.observed[k] is not None else target.observed
        if rows.seen[k] is not None and rows.status[k] not in REPLACING:
            # an original's reception or validation; a correction's (sent later) proves nothing earlier
            target.seen = rows.seen[k] if target.seen is None else min(target.seen, rows.seen[k])
        target.files.add(file)
        target.members.append(k)
        target.touched = tick
        target.orphan = target.orphan and rows.late[k]
    return [(c.members, c.orphan) for c in results]


def _differ(a, b) -> bool:
    return a is not None and b is not None and a != b


# own times closer than this are one observation time stated twice: an interface re-sending a message
# stamps its OBX-14 again, seconds later (QA regr F5: the copy became a second result, and a correction
# retracted only one); the points of a tolerance or stimulation test are 15 minutes apart or more
SAME_OBSERVATION = timedelta(minutes=5)


def _times_differ(a, b) -> bool:
    return a is not None and b is not None and abs(a - b) >= SAME_OBSERVATION


def _told_apart(k: int, j: int, rows: _Rows) -> bool:
    """Rows ``k`` and ``j`` are two observations of one message: their sub-IDs or own times are
    stated and differ (HL7 identifies an observation in its order by OBX-3 and OBX-4). Rows without
    a message id (HPRIM) count as one message per file."""
    return rows.messages[k] == rows.messages[j] and rows.files[k] == rows.files[j] and (
        _differ(rows.subs[k], rows.subs[j]) or _times_differ(rows.observed[k], rows.observed[j]))


def _agreeing(pool: list[_Result], k: int, rows: _Rows) -> list[_Result]:
    """The results of ``pool`` whose sub-ID and own time do not contradict row ``k``'s, when some do
    and others do not (a re-delivery or correction of isolate 2, of the 10:00 point); else ``pool``."""
    if rows.subs[k] is None and rows.observed[k] is None:
        return pool
    fit = [c for c in pool if not _differ(c.sub, rows.subs[k]) and not _times_differ(c.observed, rows.observed[k])]
    return fit or pool


def _nearest(results: list[_Result], day) -> list[_Result]:
    """The results whose day is nearest to ``day`` (a correction that moved the collection date)."""
    dated = [c for c in results if c.day is not None and day is not None]
    if not dated:
        return []
    best = min(abs((c.day - day).days) for c in dated)
    return [c for c in dated if abs((c.day - day).days) == best]


def _pick(pool: list[_Result], file: str) -> _Result | None:
    """Of several candidates: the first this file has not touched yet, else the latest touched."""
    if not pool:
        return None
    fresh = [c for c in pool if file not in c.files]
    if fresh:
        return fresh[0]
    return max(pool, key=lambda c: c.touched)
