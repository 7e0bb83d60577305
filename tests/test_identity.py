"""NIR checks against python-stdnum, trait normalisation and pseudonyms."""

from __future__ import annotations

import random
from datetime import date

import polars as pl
from stdnum.fr import nir as stdnir

from transforms.identity import (luhn_ok, nir_key, nir_key_ok_expr, normalise_first_name, normalise_name,
                                 pseudonym)


def test_nir_key_agrees_with_stdnum_including_corsica():
    rng = random.Random(1)
    bodies = []
    for _ in range(2000):
        dep = rng.choice(["75", "2A", "2B", "13", "99", "97"])
        bodies.append(f"{rng.choice('12')}{rng.randint(0, 99):02d}{rng.randint(1, 12):02d}{dep}"
                      f"{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}")
    good = [b + f"{nir_key(b):02d}" for b in bodies]
    bad = [b + f"{nir_key(b) % 97 + 1:02d}" for b in bodies]
    ok = pl.DataFrame({"n": good + bad}).select(nir_key_ok_expr("n").alias("ok"))["ok"].to_list()
    assert ok == [stdnir.is_valid(x) for x in good + bad]
    assert all(ok[: len(good)]) and not any(ok[len(good):])


def test_spelling_variants_normalise_alike():
    assert normalise_name("Lefèvre-Dupont ") == normalise_name("LEFEVRE DUPONT") == "LEFEVRE DUPONT"
    assert normalise_name("d'Artagnan") == normalise_name("D ARTAGNAN")
    assert normalise_first_name("Jean-Pierre Marie") == normalise_first_name("JEAN-PIERRE") == "JEAN PIERRE"
    assert normalise_first_name("Zoé, Anne") == "ZOE"


def test_pseudonym_links_variants_and_separates_people():
    s = b"k"
    a = pseudonym(s, family_name="Lefèvre", first_name="Hélène", birth_date=date(1980, 1, 2), sex="F")
    b = pseudonym(s, family_name="LEFEVRE", first_name="helene", birth_date=date(1980, 1, 2), sex="F")
    c = pseudonym(s, family_name="Lefèvre", first_name="Hélène", birth_date=date(1980, 1, 3), sex="F")
    assert a == b and a != c
    assert pseudonym(s, ins="255099900011689") != pseudonym(b"other", ins="255099900011689")
    assert pseudonym(s, family_name=None, first_name="x", birth_date=None) is None


def test_luhn():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710") and not luhn_ok("12A")
