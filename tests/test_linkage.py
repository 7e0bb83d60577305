"""Person linkage: one keyed pseudonym per person, whatever the spelling; never one for two people."""

from __future__ import annotations

import hashlib
from datetime import date

import polars as pl
import pytest

from flows.settings import DEMO_SECRET, SecretMissing, Settings
from transforms.identity import (add_person_key, linkage_family_name, linkage_first_name, linkage_traits,
                                 normalise_ins, pseudonym)

S = b"linkage-test-secret"
BD = date(1961, 4, 12)


def key(fam, first, bd=BD, sex="M", ins=None, secret=S):
    return pseudonym(secret, ins=ins, family_name=fam, first_name=first, birth_date=bd, sex=sex)


@pytest.mark.parametrize("variants", [
    [("Lefèvre", "Hélène"), ("LEFEVRE", "HELENE"), ("lefevre", "hélène"), (" Lefèvre ", "Hélène ")],
    [("Le Goff", "Jean-Pierre"), ("LE GOFF", "JEAN PIERRE"), ("Le-Goff", "Jean-Pierre Marie"),
     ("LEGOFF", "Jean‐Pierre"), ("le goff", "jean-pierre, Marie")],
    [("N'Diaye", "Aïcha"), ("N’DIAYE", "AICHA"), ("NDIAYE", "Aicha"), ("N DIAYE", "aïcha")],
    [("Cœur-Lévêque", "Zoé"), ("COEUR LEVEQUE", "ZOE"), ("Coeur-Leveque", "Zoé, Anne")],
    [("Saint-Martin", "Marie Christine"), ("SAINT MARTIN", "MARIE CHRISTINE"), ("Saint Martin", "Marie-Christine")],
])
def test_spelling_variants_of_one_person_link_to_one_key(variants):
    keys = {key(f, p, sex="F") for f, p in variants}
    assert len(keys) == 1 and None not in keys


@pytest.mark.parametrize("a, b", [
    (("Martin", "Jean"), ("Martin", "Jeanne")),
    (("Martin", "Jean-Pierre"), ("Martin", "Jean-Luc")),
    (("Martin", "Marie"), ("Martin", "Marie-Claire")),
    (("Martin", "Anne"), ("Martine", "Anne")),
    (("Le Goff", "Yann"), ("Le Gall", "Yann")),
])
def test_different_people_get_different_keys(a, b):
    assert key(*a) != key(*b)


def test_birth_date_sex_and_secret_separate_keys():
    assert key("Dupont", "Marie", bd=date(1980, 1, 2)) != key("Dupont", "Marie", bd=date(1980, 1, 3))
    assert key("Dupont", "Claude", sex="F") != key("Dupont", "Claude", sex="M")
    assert key("Dupont", "Claude", sex="H") == key("Dupont", "Claude", sex="M") == key("Dupont", "Claude", sex="1")
    assert key("Dupont", "Marie") != key("Dupont", "Marie", secret=b"another secret")
    # a keyed hash: not the plain hash of the traits, so it cannot be recomputed without the secret
    traits = linkage_traits("Dupont", "Marie", BD, "M")
    assert key("Dupont", "Marie") not in (hashlib.sha256(("TRAITS|" + traits).encode()).hexdigest()[:32],
                                          hashlib.sha256(traits.encode()).hexdigest()[:32])
    with pytest.raises(ValueError):
        pseudonym(b"", ins="255099900011689")


def test_ins_comes_first_and_is_normalised():
    ins = "255099900011689"
    assert key("A", "B", ins=ins) == key("Other", "Name", bd=date(2000, 1, 1), ins=" 2 55 09 99 000 116 89 ")
    assert key("A", "B", ins=ins) != key("A", "B")  # without the INS: traits
    assert key("A", "B", ins="2550999000116 89") == key("A", "B", ins=ins)
    assert key("A", "B", ins="255092A00011689") == key("A", "B", ins="255092a00011689")
    assert normalise_ins("  ") is None
    assert key(None, "Marie", ins=None) is None and key("Dupont", "Marie", bd=None) is None
    assert linkage_family_name("-- '") is None and linkage_first_name(", Anne") is None


def test_add_person_key_hashes_each_identity_once_and_keeps_rows():
    df = pl.DataFrame({
        "patient_nir": [None, None, "255099900011689", None],
        "family_name": ["Lefèvre", "LEFEVRE", "X", "Petit"],
        "first_name": ["Hélène", "HELENE", "Y", "Léa"],
        "birth_date": [BD, BD, BD, None],
        "sex": ["F", "F", "F", "F"],
        "line_no": [1, 2, 3, 4],
    })
    out = add_person_key(df, S)
    assert out["line_no"].to_list() == [1, 2, 3, 4]
    k = out["person_key"].to_list()
    assert k[0] == k[1] and k[2] not in (k[0], None) and k[3] is None


def test_secret_comes_from_the_environment_and_is_required_outside_demo(monkeypatch):
    monkeypatch.setenv("BIOLAKE_PSEUDONYM_SECRET", "from-the-environment")
    monkeypatch.delenv("BIOLAKE_DEMO", raising=False)
    assert Settings().secret_bytes() == b"from-the-environment"
    monkeypatch.delenv("BIOLAKE_PSEUDONYM_SECRET")
    with pytest.raises(SecretMissing, match="BIOLAKE_PSEUDONYM_SECRET"):
        Settings().secret_bytes()
    monkeypatch.setenv("BIOLAKE_PSEUDONYM_SECRET", "")
    with pytest.raises(SecretMissing, match="outside the repository"):
        Settings().secret_bytes()
    monkeypatch.setenv("BIOLAKE_DEMO", "1")
    assert Settings().secret_bytes() == DEMO_SECRET.encode()
    assert Settings.model_fields["pseudonym_secret"].default is None  # no secret shipped in the code


def _landing_identities(home) -> pl.DataFrame:
    """Every valid data line of the landing CSVs with its identity as the lab wrote it."""
    labs = pl.read_csv(Settings().seeds_dir / "labs.csv", infer_schema=False)
    enc = dict(labs.select("source", "encoding").iter_rows())
    frames = []
    for path in sorted((home / "landing").rglob("*.csv")):
        src = path.parent.name
        codec = "utf8" if enc[src] == "utf-8" else "windows-1252"
        df = pl.read_csv(path, separator=";", infer_schema=False, encoding=codec, truncate_ragged_lines=True,
                         quote_char=None).with_row_index("i")
        frames.append(df.select(
            pl.lit(path.relative_to(home / "landing").as_posix()).alias("file"),
            (pl.col("i") + 2).cast(pl.Int64).alias("line_no"), "NOM", "PRENOM", "DATE_NAISSANCE", "SEXE"))
    return pl.concat(frames)


def test_generated_patients_link_one_to_one_on_traits(generated):
    """The generator writes each person's name the way each lab does (upper case, with or without
    accents, as given): keyed on traits alone, persons (same NIR) and keys must match one to one."""
    truth = pl.read_parquet(generated / "truth" / "rows.parquet").filter(
        (pl.col("fate") == "valid") & pl.col("age").is_not_null())
    rows = truth.select("file", "line_no", "person").join(_landing_identities(generated), on=["file", "line_no"])
    assert rows.height == truth.height
    bd = pl.coalesce(pl.col("DATE_NAISSANCE").str.to_date("%d/%m/%Y", strict=False),
                     pl.col("DATE_NAISSANCE").str.to_date("%Y%m%d", strict=False))
    rows = rows.with_columns(bd.alias("bd"))
    ids = rows.select("NOM", "PRENOM", "bd", "SEXE").unique()
    keys = [pseudonym(S, family_name=f, first_name=p, birth_date=b, sex=s) for f, p, b, s in ids.iter_rows()]
    rows = rows.join(ids.with_columns(pl.Series("key", keys)), on=["NOM", "PRENOM", "bd", "SEXE"],
                     nulls_equal=True)
    spellings = rows.group_by("person").agg(pl.struct("NOM", "PRENOM").n_unique().alias("n"))
    assert spellings.filter(pl.col("n") > 1).height > 100  # many persons appear under several spellings
    assert rows["key"].null_count() == 0
    assert rows.group_by("person").agg(pl.col("key").n_unique().alias("k"))["k"].max() == 1
    assert rows.group_by("key").agg(pl.col("person").n_unique().alias("p"))["p"].max() == 1


# --------------------------------------------------------------------------------------------
# link keys: one person across pseudonyms (with and without INS, with and without sex)
# --------------------------------------------------------------------------------------------
def test_the_link_key_ignores_ins_and_sex_and_folds_spelling():
    from transforms.identity import link_message

    a = link_message("N'Diaye", "Aïssatou", BD)
    assert a == link_message("NDIAYE", "aissatou", BD) == link_message("Ndiaye", "AISSATOU", BD)
    assert a != link_message("Ndiaye", "Aissatou", date(1990, 7, 8))
    assert link_message("Ndiaye", None, BD) is None and link_message("Ndiaye", "A", None) is None


def test_person_links_join_keys_that_share_a_link_transitively():
    from transforms.identity import person_links

    pairs = pl.DataFrame({
        "person_key": ["k_ins", "k_traits_f", "k_traits_nosex", "k_other", "k_ins2", "k_alone", None],
        "link_key": ["L1", "L1", "L1", "L2", "L2", None, "L3"],
    })
    # k_ins2 also carries L1 on another result: L1 and L2 become one group
    pairs = pl.concat([pairs, pl.DataFrame({"person_key": ["k_ins2"], "link_key": ["L1"]})])
    links = person_links(pairs)
    assert dict(links.iter_rows()) == {k: "k_ins" for k in ("k_ins2", "k_other", "k_traits_f", "k_traits_nosex")}
    assert person_links(pairs.filter(pl.col("link_key") == "L2")).rows() == [("k_other", "k_ins2")]
    assert person_links(pairs.head(0)).is_empty()


def test_a_person_is_counted_once_across_ins_and_missing_sex(tmp_path):
    """QA's cases, end to end: a positive with the NIR then one without it (8 days later), and a
    positive with the sex then one without it (6 days later), were two pseudonyms each, so two P
    inside one 60-day episode (and two MDO cases). Each is now one person."""
    from flows.epi import publish_epi
    from tests.epi_support import run_steps
    from tests.helpers import HEADER, line, nir
    from warehouse import catalog as cat
    from warehouse import catalog_epi as ce

    def covid(req, day, **over):
        return line(N_DEMANDE=req, CODE_ANALYSE="COVPCR", LIBELLE_ANALYSE="SARS-CoV-2 RT-PCR", RESULTAT="Positif",
                    UNITE="", VALEURS_REFERENCE="", CODE_POSTAL="69001", DATE_PRELEVEMENT=f"{day}/01/2026 09:00",
                    DATE_RECEPTION=f"{day}/01/2026 10:00", DATE_VALIDATION=f"{day}/01/2026 18:00", **over)

    oudin = {"NOM": "Oudin", "PRENOM": "Océane", "DATE_NAISSANCE": "02/02/1985", "SEXE": "F"}
    ndiaye = {"NOM": "Ndiaye", "PRENOM": "Aïssatou", "DATE_NAISSANCE": "07/07/1990", "NIR": ""}
    lines = [HEADER,
             covid("A1", 15, NIR=nir("2850269381040"), **oudin), covid("A2", 23, **{**oudin, "NIR": ""}),
             covid("B1", 15, **{**ndiaye, "SEXE": "F"}), covid("B2", 21, **{**ndiaye, "NOM": "N'Diaye", "SEXE": ""})]
    landing = tmp_path / "home" / "landing" / "labo_alpha"
    landing.mkdir(parents=True)
    (landing / "labo_alpha_20260124.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ctx, refs = run_steps(tmp_path / "home")
    fct = ctx.wh.read(cat.FCT_LAB_RESULTS)
    assert fct.height == 4 and fct["person_key"].n_unique() == 4 and fct["link_key"].n_unique() == 2
    publish_epi(ctx, refs)
    days = ctx.wh.read(cat.SIDEP_PERSON_DAYS).filter(pl.col("disease") == "covid19")
    assert days.filter("positive").height == 2  # one per person: day 15 each; 23 and 21 are inside the episode
    assert sorted(days.filter("positive")["jour"].to_list()) == [date(2026, 1, 15)] * 2
    dep = ctx.wh.read(ce.SIDEP_DEP_DAILY).filter((pl.col("disease") == "covid19") & (pl.col("dep") == "69")
                                                 & (pl.col("cl_age90") == 0))
    assert dep["P"].sum() == 2 and dep["T"].sum() == 2
    cases = ctx.wh.read(ce.MDO_CASES).filter(pl.col("mdo_id") == "covid19")
    assert cases.height == 2 and cases["jour"].to_list() == [date(2026, 1, 15)] * 2
