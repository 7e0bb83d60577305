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

SETTLED_COLUMNS = ("file_id", "result_no", "settled_by_file_id", "settled_at")


def settle_sql(keys: str, later: str, files: str, done: str, since_seq: int) -> str:
    """SQL of the newly settled results (SETTLED_COLUMNS). ``keys``: relation of the quarantined
    results' keys (file_id, result_no, source, request_key, local_code, collected_at); ``later``:
    the valid results (file_id, file_seq, source, request_key, local_code, collected_at); ``files``:
    the loaded files (file_id, file_seq, registered_at); ``done``: the settlements already found
    (file_id, result_no). Only valid results of files after ``since_seq`` are looked at: earlier
    ones were compared with every quarantined result already (each run adds its files). Run by
    DuckDB, which joins the quarantine (possibly millions of rows: a lab's bad month) in a stream
    instead of holding it (QA bench: 13 M quarantined results took 8 GB in memory)."""
    return f"""
        WITH seq AS (SELECT file_id, min(file_seq) AS file_seq, min(registered_at) AS registered_at
                     FROM {files} GROUP BY 1),
        hits AS (SELECT v.file_id AS by_file, v.file_seq AS by_seq, v.source, v.request_key, v.local_code,
                        CAST(v.collected_at AS DATE) AS by_day
                 FROM {later} v WHERE v.file_seq > {int(since_seq)}),
        q AS (SELECT k.file_id, k.result_no, k.source, k.request_key, k.local_code,
                     CAST(k.collected_at AS DATE) AS q_day, s.file_seq AS q_seq
              FROM {keys} k JOIN seq s USING (file_id)
              WHERE k.result_no IS NOT NULL AND k.request_key IS NOT NULL AND k.local_code IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM {done} d WHERE d.file_id = k.file_id AND d.result_no = k.result_no)),
        matched AS (SELECT q.file_id, q.result_no, arg_min(h.by_file, h.by_seq) AS settled_by_file_id
                    FROM q JOIN hits h ON h.source = q.source AND h.request_key = q.request_key
                                      AND h.local_code = q.local_code
                    WHERE h.by_seq > q.q_seq AND (q.q_day IS NULL OR h.by_day = q.q_day)
                    GROUP BY 1, 2)
        SELECT m.file_id, m.result_no, m.settled_by_file_id, s.registered_at AS settled_at
        FROM matched m LEFT JOIN seq s ON s.file_id = m.settled_by_file_id
        ORDER BY 1, 2"""
