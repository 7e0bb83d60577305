"""Quarantined results that a later delivery settled.

A lab told of a quarantined result usually fixes it at the source and sends the result again, in a
later file (``alpha_03_defects_v2.csv``). Before, nothing linked the quarantined line to the result
that replaced it, so the data-quality report kept counting it among the lab's problems (QA ledger
F6). ``quality.quarantine_settled`` lists each quarantined result for which a later file of the same
lab holds a valid result of the same request and local test code:

* same lab (``source``), same request (``request_key``: the keyed hash of the lab's request number,
  computed as staging computes it) and same local test code;
* in a file registered after the quarantined one (``file_seq``);
* collected the same day when the quarantined row's collection date could be read (request
  numbers that restart every day would otherwise pair two different days' results); a row whose
  collection date is missing or unreadable is matched on its request and test alone.

The earliest such file settles it. A rejected line or message (no parsed result: no request or test
to compare) is never settled this way, nor is a result without a request number or local code.
The quarantine itself is not changed: it stays the record of what was refused and why.

A settlement is kept once found: the purge empties raw.results' identities and a later run could not
find the request number again, so each run only adds the results it newly settles.
"""

from __future__ import annotations

import polars as pl

SETTLED_COLUMNS = ("file_id", "result_no", "settled_by_file_id", "settled_at")


def candidates(quarantine: pl.DataFrame, settled: pl.DataFrame) -> pl.DataFrame:
    """The quarantined parsed results (file_id, result_no) not settled yet, once each."""
    q = quarantine.filter(pl.col("result_no").is_not_null()).select("file_id", "result_no").unique()
    return q.join(settled.select("file_id", "result_no"), on=["file_id", "result_no"], how="anti")


def settle(quarantined: pl.DataFrame, later: pl.LazyFrame, files: pl.DataFrame) -> pl.DataFrame:
    """``quarantined``: one row per unsettled quarantined result with ``file_id``, ``result_no``,
    ``source``, ``request_key``, ``local_code`` and ``collected_at`` (as parsed, null when unreadable).
    ``later``: valid results (marts.fct_lab_results) with ``file_id``, ``file_seq``, ``source``,
    ``request_key``, ``local_code`` and ``collected_at``. ``files``: ``file_id``, ``file_seq``,
    ``registered_at`` of the loaded files. Returns the results settled: SETTLED_COLUMNS."""
    seq = files.group_by("file_id").agg(pl.col("file_seq").min(), pl.col("registered_at").min())
    q = (quarantined.filter(pl.col("request_key").is_not_null() & pl.col("local_code").is_not_null())
         .join(seq.select("file_id", q_seq="file_seq"), on="file_id", how="inner")
         .with_columns(q_day=pl.col("collected_at").dt.date()))
    if q.is_empty():
        return pl.DataFrame(schema=_schema())
    keys = q.select("source", "request_key", "local_code").unique()
    hits = (later.select("file_id", "file_seq", "source", "request_key", "local_code", "collected_at")
            .join(keys.lazy(), on=["source", "request_key", "local_code"], how="semi")
            .collect())
    matched = (q.join(hits.rename({"file_id": "by", "file_seq": "by_seq", "collected_at": "by_at"}),
                      on=["source", "request_key", "local_code"], how="inner")
               .filter((pl.col("by_seq") > pl.col("q_seq"))
                       & (pl.col("q_day").is_null() | (pl.col("by_at").dt.date() == pl.col("q_day")))))
    first = (matched.sort("by_seq").group_by("file_id", "result_no", maintain_order=True).first()
             .select("file_id", "result_no", settled_by_file_id="by"))
    return (first.join(seq.select(settled_by_file_id="file_id", settled_at="registered_at"),
                       on="settled_by_file_id", how="left")
            .select(SETTLED_COLUMNS).sort("file_id", "result_no"))


def _schema() -> dict:
    return {"file_id": pl.String, "result_no": pl.Int64, "settled_by_file_id": pl.String,
            "settled_at": pl.Datetime("us")}
