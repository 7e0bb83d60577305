"""Patient identifiers: NIR/INS checks, identity-trait normalisation and keyed pseudonyms.

NIR/INS: 13 characters + a 2-digit key, key = 97 - (number mod 97), with 2A -> 19 and 2B -> 18
(Corsica) before computing. The pseudonym is an HMAC-SHA256 of the INS (or, without one, of the
normalised identity traits) under a secret held outside the repository; analysts only ever see it.

Linkage on traits (no INS): spelling variants of one person must give one key, or every variant
counts as another person (SI-DEP incidence was once inflated by about 12 % that way). Before
hashing, ``linkage_traits`` folds:

- family name: accents and ligatures removed (É -> E, Œ -> OE), upper case, and every space,
  hyphen, apostrophe or dot dropped: "Le Goff", "LE-GOFF", "Legoff" and "N'Diaye" / "NDIAYE" agree;
- first name: the first given name only, compound names kept whole: a list is cut at a comma
  ("Zoé, Anne" -> ZOE); when the name has a hyphen, hyphens join a compound and spaces separate
  given names ("Jean-Pierre Marie" -> JEANPIERRE); without a hyphen the whole text is one name,
  because labs that drop hyphens write "JEAN PIERRE" for Jean-Pierre (-> JEANPIERRE);
- birth date (ISO) and sex (F, M; H/1 = M, 2 = F; anything else empty).

Known limit: a list of first names separated by spaces only ("Anne Sophie Julie" for Anne) does not
link to "Anne"; the INS, when present, avoids all of this.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata
from datetime import date

import polars as pl

NIR_PATTERN = r"^[1-478][0-9]{4}(?:[0-9]{2}|2A|2B)[0-9]{6}[0-9]{2}$"
INS_OID_NIR = "1.2.250.1.213.1.4.8"
INS_OID_NIA = "1.2.250.1.213.1.4.9"
INS_OID_TEST = ("1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11")


def nir_key(number13: str) -> int:
    """The 2-digit key of a 13-character NIR body."""
    body = number13[:5] + {"2A": "19", "2B": "18"}.get(number13[5:7], number13[5:7]) + number13[7:13]
    return 97 - int(body) % 97


def nir_format_ok_expr(col: str) -> pl.Expr:
    return pl.col(col).str.contains(NIR_PATTERN)


def nir_key_ok_expr(col: str) -> pl.Expr:
    """True when the key matches (null-safe: null for a null or ill-formed NIR)."""
    c = pl.col(col)
    # A well-formed NIR has a letter only in 2A / 2B (the département), so replacing those gives
    # the 15 digits of body and key: one integer (< 10**15), body = n // 100 and key = n % 100.
    n = c.str.replace_many(["2A", "2B"], ["19", "18"]).cast(pl.Int64, strict=False)
    return pl.when(nir_format_ok_expr(col)).then((97 - (n // 100) % 97) == n % 100).otherwise(None)


_SPACES = re.compile(r"[\s\-'’.,]+")


def normalise_name(name: str | None) -> str | None:
    """Fold a name for linkage: no accents, upper case, hyphens/apostrophes/spaces collapsed to one space.

    "Lefèvre-Dupont " and "LEFEVRE DUPONT" give the same result.
    """
    if name is None:
        return None
    s = unicodedata.normalize("NFKD", name)
    s = "".join(ch for ch in s if not unicodedata.combining(ch))
    s = _SPACES.sub(" ", s.upper()).strip()
    return s or None


def normalise_first_name(name: str | None) -> str | None:
    """The first of the first names, normalised for display ("Jean-Pierre Marie" -> "JEAN PIERRE").

    Pseudonyms use ``linkage_first_name`` (which also links "JEAN PIERRE" to Jean-Pierre)."""
    s = normalise_name(name)
    if s is None:
        return None
    # a compound first name is written with a hyphen; several first names with spaces or commas
    raw = unicodedata.normalize("NFKD", name or "")
    first = re.split(r"[\s,]+", raw.strip())[0]
    return normalise_name(first)


_LIGATURES = str.maketrans({"Œ": "OE", "œ": "oe", "Æ": "AE", "æ": "ae", "ß": "ss", "Ø": "O", "ø": "o",
                            "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Þ": "TH", "þ": "th"})
_NOT_LETTER = re.compile(r"[^A-Z]+")
# what a NIR is printed or typed with between its groups ('2 79 07 29 100 851 43' on the carte
# Vitale, '2.79.07.29.100.851-43'): blanks of any kind, dots, hyphens and the other dashes
INS_SEPARATORS = "[\\s.\\-\u2010-\u2015]+"
_INS_SEPARATORS = re.compile(INS_SEPARATORS)


def fold(text: str) -> str:
    """Upper case without accents or ligatures ("Cœur-Lévêque" -> "COEUR-LEVEQUE")."""
    s = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    return "".join(ch for ch in s if not unicodedata.combining(ch)).upper()


@functools.lru_cache(maxsize=1 << 16)  # names repeat: each distinct one is folded once
def linkage_family_name(name: str | None) -> str | None:
    """Letters only: "Le Goff", "LE-GOFF" and "Legoff" give LEGOFF; "N'Diaye" gives NDIAYE."""
    if name is None:
        return None
    return _NOT_LETTER.sub("", fold(name)) or None


@functools.lru_cache(maxsize=1 << 16)
def linkage_first_name(name: str | None) -> str | None:
    """The first given name, compound kept whole, letters only (see the module notes)."""
    if name is None:
        return None
    first = re.split(r"[,;/]", name.strip(), maxsplit=1)[0].strip()
    if re.search(r"[-\u2010-\u2015]", first):
        first = first.split()[0] if first.split() else first
    return _NOT_LETTER.sub("", fold(first)) or None


def linkage_sex(sex: str | None) -> str:
    s = (sex or "").strip().upper()
    return {"F": "F", "2": "F", "M": "M", "H": "M", "1": "M"}.get(s, "")


def normalise_ins(ins: str | None) -> str | None:
    """The INS without blanks, dots or dashes, upper case (2A/2B); None when empty."""
    if ins is None:
        return None
    s = _INS_SEPARATORS.sub("", ins).upper()
    return s or None


def normalised_ins_expr(sent: pl.Expr) -> pl.Expr:
    """The INS column every parser hands on: ``sent`` without its separators and in upper case
    (``normalise_ins``) when what is left is shaped like a NIR, else ``sent`` unchanged.

    One rule for every format, applied before the validator's format and key checks: QA saw
    '2 79 07 29 100 851 43' loaded from a CSV extract (which removed blanks) but quarantined
    NIR_FORMAT from HL7, and '2.79.07.29.100.851-43' quarantined from both. A value that is still
    no NIR is kept as sent, so it is refused (or, in a message, dropped as a local id) as before,
    and its text in the raw layer is what the lab wrote. A well-formed NIR is unchanged, and so is
    its pseudonym."""
    bare = sent.str.replace_all(INS_SEPARATORS, "").str.to_uppercase()
    return pl.when(bare.str.contains(NIR_PATTERN)).then(bare).otherwise(sent)


def with_normalised_ins(df: pl.DataFrame, column: str = "patient_nir") -> pl.DataFrame:
    """``df`` with its INS column read by :func:`normalised_ins_expr`, the rule of every parser.

    Only the distinct values that are not already a well-formed NIR go through the rule (nearly all
    are: a regex replacement on every row cost a CSV extract about a fifth of a second per million
    rows, for nothing); a frame without the column is returned as it is."""
    if column not in df.columns:
        return df
    sent = df[column]
    odd = sent.filter(sent.is_not_null() & ~sent.str.contains(NIR_PATTERN)).unique()
    if odd.is_empty():
        return df
    read = odd.to_frame().select(normalised_ins_expr(pl.col(column))).to_series()
    return df.with_columns(pl.col(column).replace(odd, read))


def linkage_traits(family_name: str | None, first_name: str | None, birth_date: date | None,
                   sex: str | None) -> str | None:
    """The normalised traits a pseudonym is computed from, or None when a required one is missing."""
    fam, first = linkage_family_name(family_name), linkage_first_name(first_name)
    if not fam or not first or birth_date is None:
        return None
    return f"{fam}|{first}|{birth_date.isoformat()}|{linkage_sex(sex)}"


def link_message(family_name: str | None, first_name: str | None, birth_date: date | None) -> str | None:
    """The text a person's *link key* is the HMAC of: the normalised family name, first name and
    birth date, with neither the INS nor the sex; None when one of the three is missing.

    The pseudonym (``person_key``) is the INS's when there is one, else the traits' with the sex.
    So the results of one person can carry several pseudonyms: with and without their INS, with
    and without their sex. Results that share a link key are counted as one person
    (:func:`person_links`); two people with the same names and birth date but another INS or sex
    are then counted once (rare; the price of not counting the others twice)."""
    fam, first = linkage_family_name(family_name), linkage_first_name(first_name)
    if not fam or not first or birth_date is None:
        return None
    return f"LINK|{fam}|{first}|{birth_date.isoformat()}"


def link_keys(ids: pl.DataFrame, secret: bytes, out: str = "link_key") -> pl.Series:
    """The link key of each row of ``ids`` (columns family_name, first_name, birth_date)."""
    if not secret:
        raise ValueError("the link key needs a non-empty secret key")
    h = KeyedSha256(secret)
    keys = []
    for fam, first, born in ids.select("family_name", "first_name", "birth_date").iter_rows():
        msg = link_message(fam, first, born)
        keys.append(None if msg is None else h.hexdigest(msg.encode("utf-8"))[:32])
    return pl.Series(out, keys, dtype=pl.Utf8)


def person_links(pairs: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """From (person_key, link_key) pairs, the person keys that are one person: columns person_key,
    person_id (the least person key of its group), only for the keys whose id is another key.

    A group is what shares a link key, transitively: a result with INS and traits links the INS's
    key to the traits' link key, a result without INS or without sex links its own key to it too.
    Computed by propagating the least key along the pairs until nothing changes."""
    # a link key held by one person key joins nothing: only the shared ones are propagated
    edges = (pairs.lazy().select("person_key", "link_key").drop_nulls().unique()
             .filter(pl.col("person_key").n_unique().over("link_key") > 1).collect())
    none = pl.DataFrame(schema={"person_key": pl.Utf8, "person_id": pl.Utf8})
    if edges.is_empty():
        return none
    label = edges.select("person_key").unique().with_columns(pl.col("person_key").alias("person_id"))
    while True:
        by_link = edges.join(label, on="person_key").group_by("link_key").agg(pl.col("person_id").min())
        new = edges.join(by_link, on="link_key").group_by("person_key").agg(pl.col("person_id").min())
        moved = new.join(label, on="person_key", suffix="_was").filter(pl.col("person_id") != pl.col("person_id_was"))
        label = new
        if moved.is_empty():
            break
    return label.filter(pl.col("person_id") != pl.col("person_key")).sort("person_key")


def pseudonym_message(*, ins: str | None = None, family_name: str | None = None, first_name: str | None = None,
                      birth_date: date | None = None, sex: str | None = None) -> str | None:
    """The text a pseudonym is the HMAC of: the normalised INS when present, else the normalised
    traits (``linkage_traits``); None when neither is usable."""
    nir = normalise_ins(ins)
    if nir:
        return "INS|" + nir
    traits = linkage_traits(family_name, first_name, birth_date, sex)
    return None if traits is None else "TRAITS|" + traits


def pseudonym(secret: bytes, *, ins: str | None = None, family_name: str | None = None,
              first_name: str | None = None, birth_date: date | None = None, sex: str | None = None) -> str | None:
    """Keyed pseudonym of a person: HMAC-SHA256 under ``secret`` of the INS when present, else of
    the normalised traits (``linkage_traits``); None when neither is usable. 128 bits, hex."""
    if not secret:
        raise ValueError("the pseudonym needs a non-empty secret key")
    msg = pseudonym_message(ins=ins, family_name=family_name, first_name=first_name, birth_date=birth_date, sex=sex)
    if msg is None:
        return None
    return hmac.new(secret, msg.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


class KeyedSha256:
    """HMAC-SHA256 (RFC 2104) under one key, for many messages: the key's inner and outer hash
    states are computed once and copied for each message, which then costs two SHA-256 passes and
    no key setup (about three times faster than ``hmac.new`` per message, same digests)."""

    BLOCK = 64  # SHA-256 block size in bytes

    def __init__(self, key: bytes):
        if len(key) > self.BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(self.BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def hexdigest(self, msg: bytes) -> str:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


IDENTITY_COLUMNS = ["patient_nir", "family_name", "first_name", "birth_date", "sex"]


def pseudonyms(ids: pl.DataFrame, secret: bytes) -> pl.Series:
    """``pseudonym`` of each row of ``ids`` (columns ``IDENTITY_COLUMNS``): the same values, faster.

    A well-formed NIR is already normalised (no blank, dot or dash; upper-case 2A/2B), so its
    message is built in polars; the other rows (an odd INS, or traits to fold) go through
    ``pseudonym_message`` in Python. Each message is then hashed by ``KeyedSha256``.
    """
    if not secret:
        raise ValueError("the pseudonym needs a non-empty secret key")
    msgs = ids.select(pl.when(nir_format_ok_expr("patient_nir"))
                      .then(pl.lit("INS|") + pl.col("patient_nir")).alias("msg"))["msg"]
    todo = msgs.is_null()
    if todo.any():
        texts = [pseudonym_message(ins=r[0], family_name=r[1], first_name=r[2], birth_date=r[3], sex=r[4])
                 for r in ids.filter(todo).select(IDENTITY_COLUMNS).iter_rows()]
        msgs = msgs.scatter(todo.arg_true(), pl.Series(texts, dtype=pl.Utf8))
    h = KeyedSha256(secret)
    return pl.Series("person_key", [None if m is None else h.hexdigest(m.encode("utf-8"))[:32] for m in msgs],
                     dtype=pl.Utf8)


def person_keys(df: pl.DataFrame, secret: bytes, out: str = "person_key") -> pl.DataFrame:
    """The distinct identities of ``df`` (``IDENTITY_COLUMNS``), each with its pseudonym in ``out``."""
    ids = df.select(IDENTITY_COLUMNS).unique()
    if ids.is_empty():
        return ids.with_columns(pl.lit(None, dtype=pl.Utf8).alias(out))
    return ids.with_columns(pseudonyms(ids, secret).alias(out))


def add_person_key(df: pl.DataFrame, secret: bytes, out: str = "person_key") -> pl.DataFrame:
    """Add the pseudonym column, hashing each distinct identity once."""
    return df.join(person_keys(df, secret, out), on=IDENTITY_COLUMNS, how="left", nulls_equal=True,
                   maintain_order="left")


def luhn_ok(digits: str) -> bool:
    """Luhn check (FINESS, RPPS); False for anything that is not all digits."""
    if not digits or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def keyed_hashes(values: pl.Series, secret: bytes, domain: str) -> pl.Series:
    """HMAC-SHA256 under ``secret`` of ``domain + "|" + value`` for each value of a text series,
    truncated to 32 hex characters (128 bits: the chance that two of a billion distinct values
    collide is below 1e-20); null stays null. Each distinct value is hashed once.

    For lineage and grouping values that must stay comparable (equal in, equal out) but must not be
    readable: the version key of a result, the lab's request number, the message id. The ``domain``
    keeps the hashes of different kinds of values apart (a request number and a message id that
    happen to be equal give different hashes)."""
    if not secret:
        raise ValueError("a keyed hash needs a non-empty secret key")
    values = values.cast(pl.Utf8)
    distinct = values.drop_nulls().unique()
    if distinct.is_empty():
        return pl.Series(values.name, [None] * len(values), dtype=pl.Utf8)
    h = KeyedSha256(secret)
    prefix = f"{domain}|".encode("utf-8")
    hashed = [h.hexdigest(prefix + v.encode("utf-8"))[:32] for v in distinct]
    return values.replace_strict(distinct, pl.Series(hashed, dtype=pl.Utf8), default=None, return_dtype=pl.Utf8)
