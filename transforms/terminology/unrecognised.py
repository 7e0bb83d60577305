"""Text results whose wording is not recognised: the qualitative work list and its coverage.

A text result (no numeric value) on a test without a canonical unit (conversion_status
``not_numeric``) whose wording qualitative.py does not recognise keeps ``result_class`` null: it
counts in neither SI-DEP nor MDO. These functions make such results visible instead of letting them
disappear (flows/publish.py writes them to the quality layer):

* ``unrecognised_results``: per lab, test and distinct text, how many current results wait, when,
  and which surveillance (SI-DEP test definitions, MDO rules on a positive result) the test counts in;
  a text that an MDO rule of condition ``organism`` reads as naming its agent ('Legionella
  pneumophila sérogroupe 1' on a Legionella culture, see organisms.py) is counted by that rule and
  is not listed; nor is a text such a rule reads as *not* its agent (``organisms.reads_not_agent``:
  'Legionella non isolée', 'Poliovirus absent', another organism such as 'Streptococcus pneumoniae'
  on a Legionella culture; QA numbers F6): it is a negative for that rule, there is no wording to
  teach. It still counts nowhere (its result class stays null), as before;
* ``qualitative_coverage``: per lab, text results, unrecognised ones, and the same on the tests that
  count in SI-DEP or MDO, with the share the quality gate checks.

Text sent on a test *with* a canonical unit is ``text_on_quantitative`` and is counted with the
unit conversions instead. A *number* sent on a test that SI-DEP or an MDO rule reads as a verdict
(an IgM index '3,2' on the hepatitis A IgM 22314-9, QA mdo F8) is no verdict either: it counts in
nothing, so ``unrecognised_results`` lists it too, with ``reason``
``number_on_qualitative_test`` (a text has ``text_not_recognised``).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.terminology.units import NOT_NUMERIC

TEXT_MAX_CHARS = 200  # longer texts are cut (they are comments, not results)

UNRECOGNISED_SCHEMA = pl.Schema({
    "source": pl.Utf8(), "local_code": pl.Utf8(), "loinc_code": pl.Utf8(), "value_raw": pl.Utf8(),
    "n_results": pl.Int64(), "first_seen": pl.Datetime("us"), "last_seen": pl.Datetime("us"),
    "surveillance": pl.Utf8(), "reason": pl.Utf8(),
})
TEXT_NOT_RECOGNISED, NUMBER_ON_QUALITATIVE = "text_not_recognised", "number_on_qualitative_test"
COVERAGE_SCHEMA = pl.Schema({
    "source": pl.Utf8(), "n_text_results": pl.Int64(), "n_unrecognised": pl.Int64(),
    "n_surveillance_text": pl.Int64(), "n_surveillance_unrecognised": pl.Int64(),
    "share_unrecognised": pl.Float64(), "share_surveillance_unrecognised": pl.Float64(),
})


def surveillance_codes(test_definitions: Path, mdo_rules: pl.DataFrame | None) -> pl.DataFrame:
    """loinc_code -> surveillance (e.g. 'SI-DEP covid19, MDO covid19'): the LOINC codes of the SI-DEP
    test definitions and of the active MDO rules read on a positive result or on the organism named."""
    defs = pl.read_csv(test_definitions, infer_schema=False).select(
        pl.col("loinc_num").alias("loinc_code"), ("SI-DEP " + pl.col("disease")).alias("what"))
    parts = [defs]
    if mdo_rules is not None and mdo_rules.height:
        parts.append(mdo_rules.filter(pl.col("active") & pl.col("condition").is_in(["pos", "organism"])).select(
            pl.col("loinc_num").alias("loinc_code"), ("MDO " + pl.col("mdo_id")).alias("what")))
    return (pl.concat(parts).unique().sort("what").group_by("loinc_code", maintain_order=True)
            .agg(surveillance=pl.col("what").str.join(", ")).sort("loinc_code"))


def organism_agents(mdo_rules: pl.DataFrame | None) -> pl.DataFrame:
    """loinc_code -> agent (the agents' names, '|'-separated) of the active MDO rules of condition
    ``organism``: a text naming one is read by the rule (organisms.names_agent), not unrecognised."""
    schema = {"loinc_code": pl.Utf8, "agent": pl.Utf8}
    if mdo_rules is None or "agent" not in mdo_rules.columns:
        return pl.DataFrame(schema=schema)
    return (mdo_rules.filter(pl.col("active") & (pl.col("condition") == "organism") & pl.col("agent").is_not_null())
            .group_by(pl.col("loinc_num").alias("loinc_code")).agg(pl.col("agent").unique().sort().str.join("|"))
            .select(list(schema)).sort("loinc_code"))


def _text_results(fct: pl.LazyFrame, codes: pl.DataFrame, agents: pl.DataFrame | None = None) -> pl.LazyFrame:
    """Current text results on tests without a canonical unit, with their surveillance and
    ``recognised``: a class was read, or an organism rule of the test reads the text as its agent
    or as not its agent (a negation of it, another organism: ``organisms.reads_not_agent``)."""
    out = (
        fct.filter(pl.col("is_current") & (pl.col("conversion_status") == NOT_NUMERIC)
                   & pl.col("value_num").is_null()
                   & (pl.col("value_raw").str.strip_chars().str.len_chars() > 0))
        .join(codes.lazy(), on="loinc_code", how="left")
    )
    if agents is None or agents.is_empty():
        return out.with_columns(recognised=pl.col("result_class").is_not_null())
    from transforms.terminology.organisms import agent_phrases, names_agent, reads_not_agent

    phrases = {loinc: agent_phrases(agent.split("|")) for loinc, agent in agents.iter_rows()}
    # each distinct unclassed text of an organism rule's test is read once
    pairs = (out.filter(pl.col("result_class").is_null() & pl.col("loinc_code").is_in(list(phrases)))
             .select("loinc_code", "value_raw").unique().collect())
    named = pairs.with_columns(pl.Series("_named", [
        names_agent(text, phrases[loinc]) or reads_not_agent(text, phrases[loinc])
        for loinc, text in pairs.iter_rows()], dtype=pl.Boolean))
    return (out.join(named.lazy(), on=["loinc_code", "value_raw"], how="left")
            .with_columns(recognised=pl.col("result_class").is_not_null() | pl.col("_named").fill_null(False))
            .drop("_named"))


def unrecognised_results(fct: pl.LazyFrame, codes: pl.DataFrame, agents: pl.DataFrame | None = None
                         ) -> pl.DataFrame:
    """One row per lab, local code, LOINC and distinct unrecognised text (``UNRECOGNISED_SCHEMA``),
    the tests that count in a surveillance first, then the largest counts. ``agents``
    (``organism_agents``): the texts an organism rule reads are not unrecognised."""
    texts = (_text_results(fct, codes, agents).filter(~pl.col("recognised"))
             .with_columns(pl.lit(TEXT_NOT_RECOGNISED).alias("reason")))
    # a number on a surveillance test read as a verdict (no canonical unit): no verdict either
    numbers = (fct.filter(pl.col("is_current") & pl.col("value_num").is_not_null()
                          & pl.col("result_class").is_null())
               .join(codes.lazy(), on="loinc_code", how="inner")
               .with_columns(pl.lit(NUMBER_ON_QUALITATIVE).alias("reason")))
    cols = ["source", "local_code", "loinc_code", "value_raw", "collected_at", "surveillance", "reason"]
    out = (
        pl.concat([texts.select(cols), numbers.select(cols)])
        .group_by("source", "local_code", "loinc_code", pl.col("value_raw").str.strip_chars())
        .agg(n_results=pl.len(), first_seen=pl.col("collected_at").min(), last_seen=pl.col("collected_at").max(),
             surveillance=pl.col("surveillance").first(), reason=pl.col("reason").first())
        .with_columns(pl.col("value_raw").str.slice(0, TEXT_MAX_CHARS))
        # two texts cut to the same prefix make one row
        .group_by("source", "local_code", "loinc_code", "value_raw")
        .agg(pl.col("n_results").sum(), pl.col("first_seen").min(), pl.col("last_seen").max(),
             pl.col("surveillance").first(), pl.col("reason").first())
        .collect()
    )
    out = out.with_columns(pl.col("n_results").cast(pl.Int64), pl.col("first_seen").cast(pl.Datetime("us")),
                           pl.col("last_seen").cast(pl.Datetime("us")))
    return out.select(list(UNRECOGNISED_SCHEMA)).sort(
        pl.col("surveillance").is_null(), "n_results", "source", "local_code", "value_raw",
        descending=[False, True, False, False, False], nulls_last=True)


def qualitative_coverage(fct: pl.LazyFrame, codes: pl.DataFrame, agents: pl.DataFrame | None = None
                         ) -> pl.DataFrame:
    """Per lab (``COVERAGE_SCHEMA``): current text results on tests without a canonical unit, how
    many were not recognised, the same on the tests that count in SI-DEP or MDO, and the shares
    (null when the lab sent no such result)."""
    unrecognised = ~pl.col("recognised")
    watched = pl.col("surveillance").is_not_null()
    labs = fct.select("source").unique()
    counts = _text_results(fct, codes, agents).group_by("source").agg(
        n_text_results=pl.len(),
        n_unrecognised=unrecognised.sum(),
        n_surveillance_text=watched.sum(),
        n_surveillance_unrecognised=(unrecognised & watched).sum(),
    )
    out = labs.join(counts, on="source", how="left").with_columns(
        pl.col("^n_.*$").fill_null(0).cast(pl.Int64)).with_columns(
        share_unrecognised=pl.when(pl.col("n_text_results") > 0)
        .then((pl.col("n_unrecognised") / pl.col("n_text_results")).round(4)),
        share_surveillance_unrecognised=pl.when(pl.col("n_surveillance_text") > 0)
        .then((pl.col("n_surveillance_unrecognised") / pl.col("n_surveillance_text")).round(4)),
    ).collect()
    return out.select(list(COVERAGE_SCHEMA)).sort("source")
