"""The fast pseudonyms of transforms/identity.py (messages built in polars, HMAC with precomputed key
states) equal the reference ``pseudonym`` and Python's ``hmac`` bit for bit, on random inputs
including non-ASCII text, odd INS spellings and missing traits."""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from datetime import date, timedelta

import polars as pl
import pytest

from tests.helpers import bad_nir, nir
from transforms.identity import (IDENTITY_COLUMNS, NIR_PATTERN, KeyedSha256, add_person_key, nir_key,
                                 nir_key_ok_expr, pseudonym, pseudonyms)

S = b"test-secret"
ALPHABET = "abcXYZ019 -.'’,;/\t\x1c\u00a0éÈçœŒßøŁÆ\u2010\u0301ｆ２日本😀"


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def test_keyed_sha256_equals_hmac_sha256():
    rng = random.Random(3)
    keys = [b"k", S, bytes(63), bytes(range(64)), bytes(range(65)), "clé secrète".encode(), rng.randbytes(200)]
    keys += [rng.randbytes(rng.randint(1, 150)) for _ in range(40)]
    msgs = [b"", b"INS|255099900011689", "TRAITS|LEFEVRE|HELENE|1980-01-02|F".encode(),
            "Œuf ß 日本 😀".encode(), rng.randbytes(1000)]
    msgs += [_text(rng, rng.randint(0, 80)).encode("utf-8") for _ in range(60)]
    msgs += [rng.randbytes(rng.randint(0, 300)) for _ in range(60)]
    for key in keys:
        h = KeyedSha256(key)
        for msg in msgs:
            assert h.hexdigest(msg) == hmac.new(key, msg, hashlib.sha256).hexdigest()


def _random_ins(rng: random.Random) -> str | None:
    body = f"{rng.choice('12478')}{rng.randint(0, 99):02d}{rng.randint(1, 12):02d}" \
           f"{rng.choice(['75', '2A', '2B', '99'])}{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}"
    good = nir(body)
    return rng.choice([
        None, "", "   ", good, bad_nir(body), good.lower(), " ".join(good), good[:5] + "." + good[5:],
        good[:7] + "-" + good[7:], good + "\n", good[:3] + "\x1c" + good[3:], good[:3] + "\u00a0" + good[3:],
        "２" + good[1:], good[:13], _text(rng, 15), "LOCAL-" + str(rng.randint(0, 10**6)),
    ])


def _random_identity(rng: random.Random) -> tuple:
    fam = rng.choice([None, "", "Lefèvre", "LE GOFF", "N'Diaye", "Cœur-Lévêque", _text(rng, rng.randint(0, 12))])
    first = rng.choice([None, "Hélène", "Jean-Pierre Marie", "Zoé, Anne", "JEAN PIERRE",
                        _text(rng, rng.randint(0, 12))])
    born = rng.choice([None, date(1890, 1, 1) + timedelta(days=rng.randint(0, 50_000))])
    sex = rng.choice([None, "", "F", "M", "h", " 2 ", "1", "X", "f"])
    return _random_ins(rng), fam, first, born, sex


def test_pseudonyms_equal_the_reference_on_random_identities():
    rng = random.Random(11)
    rows = [_random_identity(rng) for _ in range(3000)]
    ids = pl.DataFrame(rows, schema={"patient_nir": pl.Utf8, "family_name": pl.Utf8, "first_name": pl.Utf8,
                                     "birth_date": pl.Date, "sex": pl.Utf8}, orient="row")
    expected = [pseudonym(S, ins=r[0], family_name=r[1], first_name=r[2], birth_date=r[3], sex=r[4]) for r in rows]
    assert pseudonyms(ids.select(IDENTITY_COLUMNS), S).to_list() == expected
    assert sum(k is None for k in expected) > 100 and len(set(expected)) > 1000  # both kinds were there
    # add_person_key: one key per row, rows and their order kept, duplicates share their key
    df = pl.concat([ids, ids.reverse()]).with_row_index("line_no")
    out = add_person_key(df, S)
    assert out["line_no"].to_list() == list(range(df.height))
    assert out["person_key"].to_list() == expected + expected[::-1]


def test_add_person_key_on_no_rows_and_without_secret():
    empty = pl.DataFrame(schema={"patient_nir": pl.Utf8, "family_name": pl.Utf8, "first_name": pl.Utf8,
                                 "birth_date": pl.Date, "sex": pl.Utf8, "line_no": pl.Int64})
    out = add_person_key(empty, S)
    assert out.is_empty() and out.schema["person_key"] == pl.Utf8
    one = pl.DataFrame({"patient_nir": ["255099900011689"], "family_name": [None], "first_name": [None],
                        "birth_date": [None], "sex": [None]}, schema=empty.drop("line_no").schema)
    with pytest.raises(ValueError, match="non-empty secret"):
        add_person_key(one, b"")


def test_nir_key_expression_on_odd_values():
    """nir_key_ok_expr against the Python key: null unless well-formed, then key == 97 - body % 97."""
    rng = random.Random(5)
    values = [None, "", "2550999000116", "255099900011689", "255092A00011689", "255092B00011689",
              "2550999000116XX", "25509990001168", "2550999000116890", "2A5099900011689", "255092a00011689"]
    for _ in range(3000):
        body = f"{rng.choice('123478')}{rng.randint(0, 9999):04d}{rng.choice(['2A', '2B', '20', '19', '99'])}" \
               f"{rng.randint(0, 999999):06d}"
        values += [nir(body), f"{body}{rng.randint(0, 99):02d}", _text(rng, 15), body + "2A"]
    got = pl.DataFrame({"n": values}, schema={"n": pl.Utf8}).select(nir_key_ok_expr("n"))[:, 0].to_list()
    expected = [None if v is None or not re.fullmatch(NIR_PATTERN, v) else nir_key(v[:13]) == int(v[13:])
                for v in values]
    assert got == expected
    assert got.count(True) > 1000 and got.count(False) > 1000
