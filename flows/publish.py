"""Publication of the marts, incremental: only what new (or re-coded) files touch is recomputed.

- ``marts.fct_lab_results`` is partitioned by file. New rows can change which version of a result
  is current in an earlier file (a correction); only the files holding versions of the results the
  new files touch are rewritten.
- SI-DEP and MDO are published from it by flows/epi.py (``publish_epi``), which also keeps
  ``staging.sidep_person_days`` and ``marts.sidep_daily``.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from flows.steps import Context, duck, loinc_table
from transforms import versions
from warehouse import catalog as cat


def publish_fct(ctx: Context, changed_file_ids: list[str]) -> dict:
    """Publish the fct partitions of the changed files and of the files their versions touch.

    The rows sharing a version_key (lab, request, test) are sorted into results and their
    versions by ``transforms.versions.settle`` (a re-delivery continues a result of the same person
    and day, a correction or deletion corrects one; the latest validation wins (a version without
    one is placed as transforms/versions.py says), then the later delivery, then the later row; a
    latest version with status D deletes the result).

    The coded partitions already carry the flags a result has when it has no other version
    (steps.with_provisional_versions). The flags are settled here for the versions the changed
    files touch; only the rows whose settled flags differ from the provisional ones are kept (the
    exceptions: corrections, deletions). A file without exception is published as hard links to
    its coded Parquet files (no rewrite); a file with some is rewritten with them applied.
    """
    t = cat.FCT_LAB_RESULTS
    changed = sorted(set(changed_file_ids))
    if not changed:
        return {"files_rewritten": 0, "rows": 0, "keys_touched": 0}
    wh = ctx.wh
    coded = cat.STG_RESULTS_CODED
    coded_layout = wh.layout(coded)
    coded_ids = set(wh.partitions(coded))
    changed = [fid for fid in changed if wh.holds(coded, fid, coded_layout)]
    if not changed:
        return {"files_rewritten": 0, "rows": 0, "keys_touched": 0}
    changed_set = set(changed)
    old_fct = [fid for fid in wh.partitions(t) if fid not in changed_set]
    everything = changed_set == coded_ids and not old_fct  # a first run, or every file re-coded
    con = duck(ctx)
    try:
        old_affected: list[str] = []
        only_touched = ""
        if not everything:
            new_src = wh.sql_source(coded, changed, union_by_name=False)
            con.execute(f"CREATE TEMP TABLE touched AS SELECT DISTINCT version_key FROM {new_src}").fetchall()
            # an original quarantined in a changed file may decide where an earlier correction goes
            late = quarantined_days(ctx, None, changed)["version_key"].unique().to_frame()
            if late.height:
                con.register("late_quarantined", late)
                con.execute("INSERT INTO touched SELECT version_key FROM late_quarantined "
                            "WHERE version_key NOT IN (SELECT version_key FROM touched)").fetchall()
            if old_fct:
                old_affected = [r[0] for r in con.execute(f"""
                    SELECT DISTINCT file_id FROM {wh.sql_source(t, old_fct, union_by_name=False)}
                    WHERE version_key IN (SELECT version_key FROM touched)""").fetchall()]
            only_touched = "WHERE version_key IN (SELECT version_key FROM touched)"
        affected = sorted(changed_set | set(old_affected))
        src = wh.sql_source(coded, affected)
        # counted by 64-bit hashes, not key strings: the aggregate holds integers (0.1 GB instead of
        # about 0.8 GB at 5 M results); a collision only sends two keys' rows to settle, which sorts
        # them by their real key
        con.execute(f"""CREATE TEMP TABLE versions AS
                        SELECT hash(version_key) AS h, count(*) AS n FROM {src} {only_touched} GROUP BY 1""").fetchall()
        n_keys = con.execute("SELECT count(*) FROM versions").fetchall()[0][0]
        # a result with one version keeps its provisional flags: only the keys with several versions
        # (corrections, deletions of an earlier result, several results of one request and test) are
        # settled, a few percent of the rows (transforms/versions.py)
        multi = con.sql(f"""
            SELECT version_key, file_id, result_no, file_seq, is_current AS provisional, result_status,
                   person_key, link_key, collected_date, collected_at, specimen, received_at, validated_at,
                   message_key, observation_sub_id, observed_at,
                   value_num, value_comparator, result_class, value_raw,
                   -- a version sent without a validation time is placed by its delivery: after the
                   -- latest validation delivered before it (QA: a deletion without a time never
                   -- replaced the result it deleted); a correction or deletion also after every
                   -- final (F) version of its version key, whenever delivered, and an F after the
                   -- originals delivered before it only, not after a correction (QA: an undated C
                   -- or D delivered before its original was undone by the original)
                   CASE WHEN validated_at IS NOT NULL THEN validated_at
                        WHEN result_status IN ('C', 'D') THEN greatest(
                            max(validated_at) OVER delivered,
                            max(validated_at) FILTER (WHERE result_status = 'F') OVER (PARTITION BY version_key))
                        WHEN result_status = 'F' THEN
                            max(validated_at) FILTER (WHERE result_status NOT IN ('C', 'D')) OVER delivered
                        ELSE max(validated_at) OVER delivered END AS placed_at,
                   -- and at its place, after the versions placed at the same time
                   validated_at IS NULL AND result_status IN ('C', 'D') AS undated_replacement
            FROM {src} WHERE version_key IS NOT NULL AND hash(version_key) IN (SELECT h FROM versions WHERE n > 1)
            WINDOW delivered AS (PARTITION BY version_key ORDER BY file_seq
                                 RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)""").pl()
        # a correction or deletion whose own day had an original of its request and test that was
        # quarantined stands alone, never moved to the same person's other day (QA regr2 F1)
        qdays = quarantined_days(ctx, multi["version_key"].unique())
        multi = multi.join(qdays.with_columns(own_day_quarantined=pl.lit(True)),
                           on=["version_key", "collected_date"], how="left")
        settled = versions.settle(multi).join(multi.select("file_id", "result_no", "provisional"),
                                              on=["file_id", "result_no"], how="left")
        exceptions = settled.filter(pl.col("is_current").ne_missing(pl.col("provisional"))
                                    | pl.col("superseded_by").is_not_null()).drop("provisional")
        if old_affected:
            # the earlier files keep their settled flags for the versions this run did not touch
            earlier = con.sql(f"""
                SELECT file_id, result_no, is_current, superseded_by
                FROM {wh.sql_source(t, old_affected, union_by_name=False)}
                WHERE version_key NOT IN (SELECT version_key FROM touched)
                  AND (is_current IS DISTINCT FROM (result_status IS DISTINCT FROM 'D')
                       OR superseded_by IS NOT NULL)""").pl()
            exceptions = pl.concat([exceptions, earlier], how="vertical_relaxed")
    finally:
        con.close()
    by_file = exceptions.partition_by("file_id", as_dict=True) if exceptions.height else {}
    by_file = {k[0]: v for k, v in by_file.items()}

    def publish_file(fid: str) -> int:
        """Swap in the fct partition of one file: links to its coded files, or, when some of its
        rows have settled flags of their own or its coded rows are in a pack, a rewrite. Returns
        its rows."""
        fix = by_file.get(fid)
        staging = wh._tmp_path()
        staging.mkdir()
        rows = 0
        loose = wh.files_of(coded, fid)
        for i, part in enumerate(loose or wh.parts(coded, fid)):
            out = staging / f"part-{i:05d}.parquet"
            if fix is None and loose:
                rows += pq_rows(part)
                try:
                    os.link(part, out)
                except OSError:
                    shutil.copyfile(part, out)
                continue
            df = pl.read_parquet(part) if loose else part
            if fix is None:
                rows += df.height
                wh.conform(t, df).write_parquet(out, compression="zstd", statistics=True)
                continue
            df = df.join(fix.select("result_no", pl.col("is_current").alias("_cur"),
                                    pl.col("superseded_by").alias("_sup"), pl.lit(True).alias("_fix")),
                         on="result_no", how="left", maintain_order="left")
            df = df.with_columns(
                pl.when(pl.col("_fix")).then(pl.col("_cur")).otherwise(pl.col("is_current")).alias("is_current"),
                pl.when(pl.col("_fix")).then(pl.col("_sup")).otherwise(pl.col("superseded_by")).alias("superseded_by"),
            ).drop("_cur", "_sup", "_fix")
            rows += df.height
            wh.conform(t, df).write_parquet(out, compression="zstd", statistics=True)
        wh._swap_in(staging, wh.partition_dir(t, fid))
        return rows

    # polars releases the GIL while it reads and writes: the files share the cores
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        n = sum(pool.map(publish_file, affected))
    rewritten = sum(1 for fid in affected if fid in by_file)
    return {"files_rewritten": len(affected), "rows": n, "keys_touched": n_keys,
            "affected_files": affected, "files_with_corrections": rewritten,
            "rows_corrected": exceptions.height}


def pq_rows(path) -> int:
    """Rows of a Parquet file, from its footer."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def publish_quality(ctx: Context) -> dict:
    """The mapping work queue, mapping coverage and unit-conversion coverage per lab, and the text
    results whose wording is not recognised (per lab and text, and their share per lab)."""
    from transforms.terminology import coverage, unmapped_backlog
    from transforms.terminology.suggest import surveillance_hints
    from transforms.terminology.unrecognised import organism_agents, qualitative_coverage, unrecognised_results

    fct = ctx.wh.scan(cat.FCT_LAB_RESULTS)
    unmapped = fct.filter(pl.col("mapping_status") == "unmapped").select(
        "source", "local_code", "local_label", "unit_raw", "collected_at", "specimen", "mapping_status").collect()
    codes = surveillance_loincs(ctx)
    # the items that read like a test SI-DEP or MDO counts: missing from the counts until mapped
    backlog = surveillance_hints(unmapped_backlog(unmapped), loinc_table(ctx.settings), codes)
    ctx.wh.write_table(cat.UNMAPPED_BACKLOG, backlog)
    cov = coverage(fct.select("source", "mapping_status", "local_code")).collect()
    ctx.wh.write_table(cat.MAPPING_COVERAGE, cov)
    conv = (
        fct.filter(pl.col("conversion_status") != "not_numeric")
        .group_by("source", "conversion_status").agg(n_results=pl.len())
        .with_columns(share=(pl.col("n_results") / pl.col("n_results").sum().over("source")).round(4))
        .sort("source", "conversion_status").collect()
    )
    ctx.wh.write_table(cat.UNIT_CONVERSION, conv)
    # text results whose wording is not recognised: the list, and the share per lab (gate, report)
    cols = fct.select("source", "local_code", "loinc_code", "value_raw", "value_num", "result_class",
                      "conversion_status", "is_current", "collected_at")
    agents = organism_agents(mdo_rules(ctx))  # texts naming the agent on an identification test
    unrecognised = unrecognised_results(cols, codes, agents)
    ctx.wh.write_table(cat.UNRECOGNISED_RESULTS, unrecognised)
    qual = qualitative_coverage(cols, codes, agents)
    ctx.wh.write_table(cat.QUALITATIVE_COVERAGE, qual)
    settled = publish_settled(ctx)
    hinted = backlog.filter(pl.col("surveillance").is_not_null())
    return {"backlog_codes": backlog.height,
            "backlog_surveillance": hinted.select("source", "local_code", "local_label", "n_results",
                                                  "surveillance_loinc", "surveillance").rows(),
            # coded = mapped (the lab's mapping) + sent as LOINC (the source's own code): both shown
            "coverage": cov.select("source", "n_results", "n_mapped", "n_source_loinc", "share_coded").rows(),
            "conversion": conv.rows(), "unrecognised_texts": unrecognised.height,
            "unrecognised_results": int(qual["n_unrecognised"].sum()),
            "quarantine_settled_new": settled}


KEYS_CACHE = ("_cache", "quarantine_keys")  # under the warehouse root; not a catalog table
# bump when the keys are computed otherwise: the files written before are brought up to date (_remask_keys)
# 2: the codes masked as staging masks them (QA priv F2: a name typed as the test code was kept here)
KEYS_FORMAT = "2"
_KEYS_CODES = ("local_code", "loinc_code_src")
_KEYS_IDENTITY = ("family_name", "first_name", "birth_date")


def _masked_codes(raw: pl.DataFrame) -> pl.DataFrame:
    """``raw`` (raw.results rows with the identity columns) with the codes masked as ``to_staging``
    masks them (transforms/identity_text.py), so the cached version_key is the staging one."""
    from transforms.identity_text import MASKED_COLUMN, mask_identities_in_text

    return mask_identities_in_text(raw, _KEYS_CODES).drop(MASKED_COLUMN, *_KEYS_IDENTITY)


def _remask_keys(ctx: Context, folder) -> None:
    """Bring cached key files of an earlier format up to date: their codes (and the version_key made
    of them) taken again from raw.results, masked with the row's identity while raw holds it (after the
    purge, raw's codes are already masked, the purge having masked them with it). The request keys are
    kept (the purge empties the request numbers they come from). A file whose raw partition is gone
    is deleted (nothing to prove it clean)."""
    from flows.steps import version_key_expr

    marker = folder / "FORMAT"
    if not folder.exists() or (marker.exists() and marker.read_text().strip() == KEYS_FORMAT):
        return
    raw_files = set(ctx.wh.partitions(cat.RAW_RESULTS))
    for path in sorted(folder.glob("*.parquet")):
        fid = path.stem
        if fid not in raw_files:
            path.unlink(missing_ok=True)
            continue
        keys = pl.read_parquet(path)
        raw = _masked_codes(ctx.wh.scan(cat.RAW_RESULTS, [fid])
                            .select("file_id", "result_no", *_KEYS_CODES, *_KEYS_IDENTITY)
                            .join(keys.lazy().select("file_id", "result_no"), on=["file_id", "result_no"],
                                  how="semi").collect())
        keys = (keys.drop("local_code").join(raw.drop("file_id"), on="result_no", how="left")
                .with_columns(version_key_expr().alias("version_key"))
                .select([pl.col(c).cast(t) for c, t in _KEYS_SCHEMA.items()]))
        _write_keys(keys, path)
    marker.write_text(KEYS_FORMAT + "\n")


def _write_keys(keys: pl.DataFrame, path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    keys.write_parquet(tmp)
    os.replace(tmp, path)
_KEYS_SCHEMA = {"file_id": pl.Utf8, "result_no": pl.Int64, "source": pl.Utf8, "request_key": pl.Utf8,
                "local_code": pl.Utf8, "version_key": pl.Utf8, "collected_at": pl.Datetime("us")}


def quarantine_keys(ctx: Context) -> list:
    """The Parquet files holding the lineage keys of every quarantined parsed result (file_id,
    result_no, source, request_key, local_code, version_key, collected_at: keyed hashes and codes,
    no identity), one per file with a quarantine, computed from raw.results as staging computes
    them: ``<warehouse>/_cache/quarantine_keys/<file_id>.parquet``.

    Each file's keys are computed once, from its own raw partition alone, the first time a
    publication sees its quarantine (bounded memory: QA bench, 13 M quarantined results of 20 M,
    took 5 GB read at once), kept when the purge empties the request numbers they come from, and
    forgotten when the file is read again (``biolake reprocess``). A file without quarantined
    results has an empty one. The codes are masked as staging masks them (a NIR or the patient's
    name typed as the test code: QA priv F2), and the folder is closed like raw
    (warehouse/analyst.private_dirs)."""
    from flows.steps import version_key_expr, with_lineage_keys

    folder = ctx.wh.root.joinpath(*KEYS_CACHE)
    _remask_keys(ctx, folder)
    current = set(ctx.wh.partitions(cat.QUARANTINE))
    have = {p.stem: p for p in folder.glob("*.parquet")} if folder.exists() else {}
    for stale in set(have) - current:
        have.pop(stale).unlink(missing_ok=True)
    todo = sorted(current - set(have))
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "FORMAT").write_text(KEYS_FORMAT + "\n")
        raw_files = set(ctx.wh.partitions(cat.RAW_RESULTS))
        secret = ctx.settings.secret_bytes()
        for fid in todo:
            q = (ctx.wh.scan(cat.QUARANTINE, [fid]).select("file_id", "result_no")
                 .filter(pl.col("result_no").is_not_null()).unique().collect())
            keys = pl.DataFrame(schema=_KEYS_SCHEMA)
            if q.height and fid in raw_files:
                raw = (ctx.wh.scan(cat.RAW_RESULTS, [fid])
                       .select("file_id", "result_no", "source", "request_id", "message_id", *_KEYS_CODES,
                               "collected_at", *_KEYS_IDENTITY)
                       .join(q.lazy(), on=["file_id", "result_no"], how="semi").collect())
                keys = (with_lineage_keys(_masked_codes(raw), secret)
                        .with_columns(version_key_expr().alias("version_key"),
                                      pl.col("collected_at").cast(pl.Datetime("us")))
                        .select([pl.col(c).cast(t) for c, t in _KEYS_SCHEMA.items()]))
            path = folder / f"{fid}.parquet"
            _write_keys(keys, path)
            have[fid] = path
    return [have[f] for f in sorted(have)]


def forget_quarantine_keys(ctx: Context, file_ids: set[str]) -> None:
    """Drop the cached keys of these files (read again: their quarantine changes)."""
    folder = ctx.wh.root.joinpath(*KEYS_CACHE)
    for fid in file_ids:
        (folder / f"{fid}.parquet").unlink(missing_ok=True)


def _keys_relation(paths: list) -> str:
    from warehouse.views import sql_literal

    if not paths:
        cols = ", ".join(f"NULL::{'BIGINT' if t == pl.Int64 else 'TIMESTAMP' if t != pl.Utf8 else 'VARCHAR'} AS {c}"
                         for c, t in _KEYS_SCHEMA.items())
        return f"(SELECT {cols} WHERE false)"
    return "read_parquet([" + ", ".join(sql_literal(str(p)) for p in paths) + "])"


def quarantined_days(ctx: Context, keys: pl.Series | None, file_ids: list[str] | None = None) -> pl.DataFrame:
    """version_key, collected_date of the quarantined parsed results (of ``file_ids`` when given),
    restricted to ``keys`` when given: the days whose original of a request and test was delivered
    and refused (transforms/versions.py). From ``quarantine_keys``; a result whose request, test or
    collection cannot be read gives none."""
    paths = quarantine_keys(ctx)
    if file_ids is not None:
        wanted = set(file_ids)
        paths = [p for p in paths if p.stem in wanted]
    con = duck(ctx)
    try:
        where = ""
        if keys is not None:
            con.register("wanted_keys", pl.DataFrame({"version_key": keys.unique()}))
            where = "AND version_key IN (SELECT version_key FROM wanted_keys)"
        got = con.sql(f"""SELECT DISTINCT version_key, CAST(collected_at AS DATE) AS collected_date
                          FROM {_keys_relation(paths)}
                          WHERE request_key IS NOT NULL AND collected_at IS NOT NULL {where}""").pl()
    finally:
        con.close()
    return got.cast({"version_key": pl.Utf8, "collected_date": pl.Date})


def publish_settled(ctx: Context) -> int:
    """Add to quality.quarantine_settled the quarantined results a later file now settles
    (quality/settled.py): the keys of each unsettled quarantined result (``quarantine_keys``) are
    looked for among the valid results of the files published since the last look (the state's
    ``settled_checked_seq``; ``biolake reprocess`` resets it). Returns how many were newly settled."""
    from flows.steps import _save_state, _state
    from quality import settled as st

    t = cat.QUARANTINE_SETTLED
    done = ctx.wh.read(t)
    paths = quarantine_keys(ctx)
    files = (ctx.wh.scan(cat.FILE_LOG).filter(pl.col("status") == "loaded")
             .select("file_id", "file_seq", "registered_at").collect())
    since = int(_state(ctx).get("settled_checked_seq", 0))
    newest = int(files["file_seq"].max() or 0) if files.height else 0
    new = None
    if paths and newest > since and ctx.wh.partitions(cat.FCT_LAB_RESULTS):
        con = duck(ctx)  # the warehouse's memory limit, spilling to its temporary folder above it
        try:
            con.register("files", files)
            con.register("done", done.select("file_id", "result_no"))
            later = (f"(SELECT file_id, file_seq, source, request_key, local_code, collected_at "
                     f"FROM {ctx.wh.sql_source(cat.FCT_LAB_RESULTS)})")
            new = con.sql(st.settle_sql(_keys_relation(paths), later, "files", "done", since)).pl()
        finally:
            con.close()
    if new is not None and new.height:
        ctx.wh.write_table(t, pl.concat([done, new.cast(dict(done.schema))], how="vertical_relaxed")
                           .sort("file_id", "result_no"))
    elif not ctx.wh.table_dir(t).exists():
        ctx.wh.write_table(t, done)
    _save_state(ctx, settled_checked_seq=newest)
    return new.height if new is not None else 0


def mdo_rules(ctx: Context) -> pl.DataFrame | None:
    """The MDO rules table (the operator's when set), None when there is none."""
    from flows.epi import rules_path
    from transforms.epi.mdo import load_rules

    path = rules_path(ctx)
    return load_rules(path) if path.exists() else None


def surveillance_loincs(ctx: Context) -> pl.DataFrame:
    """loinc_code -> surveillance: the SI-DEP test definitions and the active MDO rules on a
    positive result or the organism named (the operator's rules table when set)."""
    from transforms.terminology.unrecognised import surveillance_codes

    return surveillance_codes(ctx.settings.seeds_dir / "test_definitions.csv", mdo_rules(ctx))
