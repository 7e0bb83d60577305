"""Which rows sharing a version key (lab, request, test, specimen) are versions of one result
(transforms/versions.py). QA (HIGH, twice): a glucose tolerance test's three measurements, and two
patients given the same request number, replaced each other silently."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

from transforms.versions import settle

D1, D2 = date(2026, 11, 2), date(2026, 11, 3)


def _rows(*rows: tuple) -> pl.DataFrame:
    """(file_id, result_no, file_seq, validated hour, status, person, day) -> settle's input."""
    return pl.DataFrame(
        [{"version_key": "lab|req|GLY|", "file_id": f, "result_no": n, "file_seq": seq,
          "placed_at": datetime(2026, 11, 4, h), "result_status": st, "person_key": p, "collected_date": d}
         for f, n, seq, h, st, p, d in rows])


def _flags(rows: pl.DataFrame) -> dict:
    out = settle(rows)
    return {f"{f}:{n}": (cur, sup) for f, n, cur, sup in out.iter_rows()}


def test_a_correction_replaces_and_a_deletion_removes():
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "C", "p", D1)))
    assert got == {"a:1": (False, "b:1"), "b:1": (True, None)}
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "D", "p", D1)))
    assert got == {"a:1": (False, "b:1"), "b:1": (False, None)}


def test_a_final_result_delivered_again_replaces_the_earlier_delivery():
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 7, 2, 9, "F", "p", D1)))
    assert got == {"a:1": (False, "b:7"), "b:7": (True, None)}


def test_the_measurements_of_a_tolerance_test_are_three_results():
    rows = _rows(("a", 1, 1, 8, "F", "p", D1), ("a", 2, 1, 8, "F", "p", D1), ("a", 3, 1, 8, "F", "p", D1))
    assert all(cur and sup is None for cur, sup in _flags(rows).values())
    # delivered again whole: the k-th measurement continues the k-th result
    again = pl.concat([rows, _rows(("b", 1, 2, 9, "F", "p", D1), ("b", 2, 2, 9, "F", "p", D1),
                                   ("b", 3, 2, 9, "F", "p", D1))])
    assert _flags(again) == {"a:1": (False, "b:1"), "a:2": (False, "b:2"), "a:3": (False, "b:3"),
                             "b:1": (True, None), "b:2": (True, None), "b:3": (True, None)}


def test_a_request_number_given_to_another_patient_or_day_is_another_result():
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "F", "q", D2)))
    assert got == {"a:1": (True, None), "b:1": (True, None)}
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "F", "p", D2)))  # a daily counter
    assert got == {"a:1": (True, None), "b:1": (True, None)}
    # and a correction goes to the result of its person and day, not to the latest row
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "F", "q", D2), ("c", 1, 3, 10, "C", "p", D1)))
    assert got == {"a:1": (False, "c:1"), "b:1": (True, None), "c:1": (True, None)}


def test_a_correction_of_the_identity_or_of_the_day_still_replaces():
    # the birth date corrected: another person key, the same day
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "C", "p2", D1)))
    assert got == {"a:1": (False, "b:1"), "b:1": (True, None)}
    # the collection day corrected: the same person
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "C", "p", D2)))
    assert got == {"a:1": (False, "b:1"), "b:1": (True, None)}
    # both changed: nothing to correct with any certainty, it stands alone
    got = _flags(_rows(("a", 1, 1, 8, "F", "p", D1), ("b", 1, 2, 9, "C", "q", D2)))
    assert got == {"a:1": (True, None), "b:1": (True, None)}


def test_order_is_validation_then_delivery():
    # the later validation wins whatever the delivery order (the documented rule)
    got = _flags(_rows(("b", 1, 2, 8, "C", "p", D1), ("a", 1, 1, 9, "F", "p", D1)))
    assert got == {"b:1": (False, "a:1"), "a:1": (True, None)}


def _valued(*rows: tuple) -> pl.DataFrame:
    """(file_id, result_no, value_raw, value_num) of one person and day, status F, one delivery each."""
    return pl.DataFrame(
        [{"version_key": "lab|req|2345-7|", "file_id": f, "result_no": n, "file_seq": 1 if f == "a" else 2,
          "placed_at": datetime(2026, 11, 4, 8), "result_status": "F", "person_key": "p", "collected_date": D1,
          "value_raw": raw, "value_num": num, "value_comparator": None, "result_class": None}
         for f, n, raw, num in rows])


def test_a_segur_message_carrying_each_result_twice_holds_one_result():
    """docs/formats.md: a Ségur message sends each result as an OBX and inside its embedded CDA;
    the two rows (same value, written differently) are one result, also when delivered again."""
    once = _valued(("a", 1, "5.2", 5.2), ("a", 2, "5,2", 5.2))
    assert _flags(once) == {"a:1": (False, "a:2"), "a:2": (True, None)}
    twice = pl.concat([once, _valued(("b", 1, "5.2", 5.2), ("b", 2, "5,2", 5.2))])
    got = _flags(twice)
    assert [k for k, (cur, _) in got.items() if cur] == ["b:2"]
    # a tolerance test's measurements differ: three results, each continued by its own re-delivery
    ogtt = _valued(("a", 1, "4.8", 4.8), ("a", 2, "7.9", 7.9), ("a", 3, "6.1", 6.1),
                   ("b", 1, "4.8", 4.8), ("b", 2, "7.9", 7.9), ("b", 3, "6.1", 6.1))
    assert sorted(k for k, (cur, _) in _flags(ogtt).items() if cur) == ["b:1", "b:2", "b:3"]


def test_specimens_stated_and_different_are_two_results_and_one_unstated_fits_either():
    def row(f, n, specimen, value):
        return {"version_key": "lab|req|LEU", "file_id": f, "result_no": n, "file_seq": 1,
                "placed_at": datetime(2026, 11, 4, 8), "result_status": "F", "person_key": "p",
                "collected_date": D1, "specimen": specimen, "value_raw": value, "value_num": float(value),
                "value_comparator": None, "result_class": None}

    blood_and_urine = pl.DataFrame([row("a", 1, "Sang", "7"), row("a", 2, "Urine", "7")])
    assert all(cur for cur, _ in _flags(blood_and_urine).values())
    # an OBX without specimen beside the embedded CDA's row that states it (same value): one result
    segur = pl.DataFrame([row("a", 1, None, "5.4"), row("a", 2, "SER", "5.4")])
    assert _flags(segur) == {"a:1": (False, "a:2"), "a:2": (True, None)}


def _segur_glucose(tmp_path, glucose_obx: str) -> pl.DataFrame:
    """The fact table's glucose rows of an HL7 message carrying the glucose as the OBX
    ``glucose_obx`` and again inside its embedded CR-BIO document (tests/fixtures/cda)."""
    import base64
    from pathlib import Path

    from tests.epi_support import run_steps
    from warehouse import catalog as cat

    cda = (Path(__file__).parent / "fixtures" / "cda" / "crbio_sample.xml").read_bytes()
    message = ("MSH|^~\\&|SGL|LABO^750000002^FINESS|DMP|ANS|20240305120000||ORU^R01^ORU_R01|ED-1|P|2.5\r"
               "PID|1||285077512345655^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||LEGRAND^Élodie^^^^^L"
               "||19850712|F\r"
               "OBR|1||DEM-2024-0042|11502-2^CR d'examens biologiques^LN|||20240305073500\r"
               + glucose_obx + "\r"
               "OBX|2|ED|11502-2^CR d'examens biologiques^LN||^text^XML^Base64^"
               + base64.b64encode(cda).decode("ascii") + "||||||F\r")
    home = tmp_path / "home"
    (home / "landing" / "labo_segur").mkdir(parents=True)
    (home / "landing" / "labo_segur" / "message.hl7").write_bytes(message.encode("utf-8"))
    ctx, _ = run_steps(home)
    return ctx.wh.read(cat.FCT_LAB_RESULTS).filter(pl.col("local_code") == "GLY").sort("line_no")


def test_a_segur_message_publishes_each_result_once(tmp_path):
    """End to end: an HL7 message carrying a glucose as an OBX and again inside its embedded CR-BIO
    document (which also states the specimen) has one current glucose in the fact table."""
    glucose = _segur_glucose(tmp_path, "OBX|1|NM|GLY^Glycémie à jeun^L^2345-7^Glucose^LN||5.4|mmol/L|3.9-5.8|N|||F")
    assert glucose.height == 2  # both rows are kept, as sent
    assert glucose["is_current"].to_list() == [False, True]
    assert glucose["superseded_by"][0] == f"{glucose['file_id'][1]}:{glucose['result_no'][1]}"


def _r(f: str, n: int, seq: int, validated: datetime, status: str, value: str, collected: datetime,
       person: str = "p", link: str | None = "L") -> dict:
    return {"version_key": "lab|req|PCR", "file_id": f, "result_no": n, "file_seq": seq, "placed_at": validated,
            "result_status": status, "person_key": person, "link_key": link, "collected_date": collected.date(),
            "collected_at": collected, "value_raw": value, "value_num": None, "value_comparator": None,
            "result_class": None}


def _current(*rows: dict) -> list[str]:
    return sorted(k for k, (cur, _) in _flags(pl.DataFrame(list(rows))).items() if cur)


T8, T9, T10 = datetime(2026, 11, 2, 8), datetime(2026, 11, 2, 9), datetime(2026, 11, 2, 10)
V1, V2 = datetime(2026, 11, 2, 18), datetime(2026, 11, 3, 9)


def test_a_cumulative_extract_holding_a_result_and_its_revalidation_keeps_the_later():
    """QA (HIGH): e2 repeats e1's positive and adds the same test re-validated negative the next
    day; both stayed current (P counted twice)."""
    assert _current(_r("e1", 1, 1, V1, "F", "POSITIF", T8),
                    _r("e2", 1, 2, V1, "F", "POSITIF", T8), _r("e2", 2, 2, V2, "F", "NEGATIF", T8)) == ["e2:2"]


def test_a_correction_of_one_measurement_replaces_the_one_collected_at_its_time():
    """QA (HIGH): a tolerance test's first measurement corrected replaced its last one."""
    ogtt = [_r("f1", 1, 1, V1, "F", "5,0", T8), _r("f1", 2, 1, V1, "F", "9,0", T9), _r("f1", 3, 1, V1, "F", "7,0", T10)]
    assert _current(*ogtt) == ["f1:1", "f1:2", "f1:3"]
    assert _current(*ogtt, _r("f2", 1, 2, V2, "C", "5,5", T8)) == ["f1:2", "f1:3", "f2:1"]
    # all three corrected in one file, at one collection time (HL7 without OBX-14): one each, in order
    same_time = [_r("f1", i, 1, V1, "F", v, T8) for i, v in ((1, "5,0"), (2, "9,0"), (3, "7,0"))]
    fixes = [_r("f2", i, 2, V2, "C", v, T8) for i, v in ((1, "5,5"), (2, "9,5"), (3, "7,5"))]
    assert _current(*same_time, *fixes) == ["f2:1", "f2:2", "f2:3"]


def test_a_correction_that_moves_the_day_replaces_the_nearest_day():
    """QA: with a daily request number, a correction moving 02/11 to 01/11 replaced the 04/11 test."""
    d4 = datetime(2026, 11, 4, 8)
    assert _current(_r("e1", 1, 1, V1, "F", "POSITIF", T8),
                    _r("e2", 1, 2, datetime(2026, 11, 4, 18), "F", "NEGATIF", d4),
                    _r("e3", 1, 3, datetime(2026, 11, 5, 9), "C", "POSITIF", datetime(2026, 11, 1, 8))) \
        == ["e2:1", "e3:1"]


def test_a_redelivery_that_adds_the_ins_is_the_same_person():
    """QA: the person key moves from the names' hash to the INS's; the link key (names and birth
    date) is the same."""
    assert _current(_r("f1", 1, 1, V1, "F", "POSITIF", T8, person="names"),
                    _r("f2", 1, 2, V2, "F", "NEGATIF", T8, person="ins")) == ["f2:1"]
    # another person (another link key) with the same request number stays apart
    assert _current(_r("f1", 1, 1, V1, "F", "POSITIF", T8, person="a", link="LA"),
                    _r("f2", 1, 2, V2, "F", "NEGATIF", T8, person="b", link="LB")) == ["f1:1", "f2:1"]


def test_a_correction_of_the_identity_on_a_daily_request_number_replaces_the_result_collected_at_its_time():
    """QA (HIGH): request 1 of 02/11 is Benoit's positive, request 1 of 03/11 Chloe's negative (a daily
    counter); the lab then gives the 03/11 sample to Benoit (a C collected 03/11 10:00). The C replaced
    Benoit's 02/11 positive (the same person's nearest day came before another person's exact time)."""
    d2, d3 = datetime(2026, 11, 2, 10), datetime(2026, 11, 3, 10)
    benoit = _r("f1", 1, 1, V1, "F", "POSITIF", d2, person="benoit", link="LB")
    chloe = _r("f1", 2, 1, V2, "F", "NEGATIF", d3, person="chloe", link="LC")
    fix = _r("f2", 1, 2, datetime(2026, 11, 5, 8), "C", "NEGATIF", d3, person="benoit", link="LB")
    assert _flags(pl.DataFrame([benoit, chloe, fix])) == {
        "f1:1": (True, None), "f1:2": (False, "f2:1"), "f2:1": (True, None)}
    # no collection time stated: the same day (request 1 of 03/11) still beats Benoit's other day
    untimed = [{**row, "collected_at": None} for row in (benoit, chloe, fix)]
    assert _current(*untimed) == ["f1:1", "f2:1"]
    # a tolerance test of 03/11 given to Benoit: each correction to the measurement of its time
    ogtt = [_r("f1", 2 + i, 1, V2, "F", v, t, person="chloe", link="LC")
            for i, (v, t) in enumerate((("5,0", d3), ("9,0", d3.replace(hour=11)), ("7,0", d3.replace(hour=12))))]
    fixes = [_r("f2", 1 + i, 2, datetime(2026, 11, 5, 8), "C", r["value_raw"], r["collected_at"],
                person="benoit", link="LB") for i, r in enumerate(ogtt)]
    assert _current(benoit, *ogtt, *fixes) == ["f1:1", "f2:1", "f2:2", "f2:3"]


def test_an_undated_correction_comes_after_the_versions_placed_at_its_time():
    """publish_fct places an undated C or D after every F of its key (QA F4); at an equal place the
    flag ``undated_replacement`` puts it after them, whatever the delivery order."""
    rows = [_r("b", 1, 1, V1, "C", "POSITIF", T8), _r("a", 1, 2, V1, "F", "NEGATIF", T8)]
    assert _current(*rows) == ["a:1"]  # no flag: the later delivery wins
    rows[0]["undated_replacement"], rows[1]["undated_replacement"] = True, False
    assert _current(*rows) == ["b:1"]


def test_equal_measurements_at_different_times_of_one_file_are_results_of_their_own():
    """QA F1: a tolerance test 5,0 (08:00), 7,5 (09:00), 5,0 (10:00) in one file: the 08:00 value
    was taken for the 10:00 one again (equal values), leaving two results. The Ségur duplicate
    (same value, same time, or a time stated by one row only) is still one result."""
    ogtt = [_r("f1", 1, 1, V1, "F", "5,0", T8), _r("f1", 2, 1, V1, "F", "7,5", T9), _r("f1", 3, 1, V1, "F", "5,0", T10)]
    assert _current(*ogtt) == ["f1:1", "f1:2", "f1:3"]
    # delivered again whole: each measurement continues its own result
    again = [_r("f2", n, 2, V1, "F", r["value_raw"], r["collected_at"]) for n, r in enumerate(ogtt, start=1)]
    assert _current(*ogtt, *again) == ["f2:1", "f2:2", "f2:3"]
    assert _current(_r("f1", 1, 1, V1, "F", "5,0", T8), _r("f1", 2, 1, V1, "F", "5,0", T8)) == ["f1:2"]
    assert _current(_r("f1", 1, 1, V1, "F", "5,0", T8), {**_r("f1", 2, 1, V1, "F", "5,0", T8),
                                                         "collected_at": None}) == ["f1:2"]


def test_a_deletion_without_a_date_deletes_the_persons_only_result_of_the_request():
    """QA F3: a D without a collection date deletes the result of its lab, request, test and person
    when there is one; with several (a daily request number) it stands alone, deleting nothing."""
    undated = {**_r("g", 1, 3, datetime(2026, 11, 5, 8), "D", None, T8), "collected_at": None, "collected_date": None}
    one = _r("e", 1, 1, V1, "F", "POSITIF", T8)
    assert _flags(pl.DataFrame([one, undated])) == {"e:1": (False, "g:1"), "g:1": (False, None)}
    # delivered again, the deletion still holds
    again = {**undated, "file_id": "h", "file_seq": 4}
    assert _current(one, undated, again) == []
    # another person's result of the same request is not the deleted one
    assert _current(_r("e", 1, 1, V1, "F", "POSITIF", T8, person="q", link="LQ"), undated) == ["e:1"]
    # two results of the person under this request and test: which one? neither
    other_day = _r("f", 1, 2, V2, "F", "NEGATIF", datetime(2026, 11, 3, 8))
    assert _current(one, other_day, undated) == ["e:1", "f:1"]


def test_a_correction_of_a_day_after_another_days_validation_does_not_replace_it():
    """QA regr2 F1 (HIGH): a daily request number R1; the same person's 19/11 positive (received and
    validated 19/11) and, the next day, a correction of the 20/11 sample whose original was never
    kept. The correction replaced the 19/11 positive, which vanished from P: a specimen collected
    on 20/11 cannot be the one validated on 19/11, so the correction stands alone."""
    pos = {**_r("f1", 1, 1, datetime(2026, 11, 19, 18), "F", "POSITIF", datetime(2026, 11, 19, 8)),
           "validated_at": datetime(2026, 11, 19, 18), "received_at": datetime(2026, 11, 19, 12)}
    fix = {**_r("f2", 1, 2, datetime(2026, 11, 21, 9), "C", "NEGATIF", datetime(2026, 11, 20, 8)),
           "validated_at": datetime(2026, 11, 21, 9), "received_at": datetime(2026, 11, 20, 9)}
    assert _flags(pl.DataFrame([pos, fix])) == {"f1:1": (True, None), "f2:1": (True, None)}
    # a corrected date the other way (the original's day was typed after the real one): still moved
    late = {**pos, "collected_at": datetime(2026, 11, 21, 8), "collected_date": date(2026, 11, 21),
            "validated_at": datetime(2026, 11, 21, 18), "received_at": datetime(2026, 11, 21, 12)}
    assert _flags(pl.DataFrame([late, fix])) == {"f1:1": (False, "f2:1"), "f2:1": (True, None)}


def test_a_correction_whose_own_day_original_was_quarantined_stands_alone():
    """QA regr2 F1: the correction's own original (same request, test and day) was delivered and
    quarantined: the correction is that result sent again, not a moved date of another day's."""
    later = {**_r("f1", 1, 1, datetime(2026, 11, 21, 8, 30), "F", "POSITIF", datetime(2026, 11, 21, 8)),
             "validated_at": datetime(2026, 11, 21, 8, 30)}
    fix = {**_r("f2", 1, 2, datetime(2026, 11, 21, 9), "C", "NEGATIF", datetime(2026, 11, 20, 8)),
           "validated_at": datetime(2026, 11, 21, 9)}
    assert _flags(pl.DataFrame([later, fix])) == {"f1:1": (False, "f2:1"), "f2:1": (True, None)}
    assert _flags(pl.DataFrame([later, {**fix, "own_day_quarantined": True}])) == {
        "f1:1": (True, None), "f2:1": (True, None)}


def _obs(f: str, n: int, value: str, sub: str | None = None, observed: datetime | None = None,
         message: str | None = "M1", status: str = "F", seq: int = 1, validated: datetime = V1) -> dict:
    """A row of request 'req', test ABX, person p, collected at 08:00 (the order's time), one message."""
    return {**_r(f, n, seq, validated, status, value, T8), "message_key": message, "observation_sub_id": sub,
            "observed_at": observed}


def test_results_of_one_message_with_different_sub_ids_are_results_of_their_own():
    """QA fmt F1: an antibiogram sends the amoxicillin of isolate 1 (OBX-4 1) and of isolate 2
    (OBX-4 2), both S: the first was filed as an earlier version of the second. OBX-3 and OBX-4
    identify an observation in its order: two results, also with equal values and times."""
    isolates = [_obs("f1", 1, "S", "1"), _obs("f1", 2, "S", "2")]
    assert _current(*isolates) == ["f1:1", "f1:2"]
    # one validated later than the other: still two isolates, not a re-validation
    assert _current(_obs("f1", 1, "S", "1"), _obs("f1", 2, "S", "2", validated=V2)) == ["f1:1", "f1:2"]
    # the same sub-ID (or none) in one message: that result again, as before
    assert _current(_obs("f1", 1, "S", "1"), _obs("f1", 2, "S", "1")) == ["f1:2"]
    # in two messages of the file, sub-IDs do not part results (a sender may number them per message)
    assert _current(_obs("f1", 1, "S", "1", message="M1"), _obs("f1", 2, "S", "2", message="M2")) == ["f1:2"]


def test_points_of_a_timed_series_in_one_message_are_results_of_their_own():
    """QA fmt F1: a tolerance test's T0 and T120 glucose, both 5,0 under one OBR-7 (08:00), told apart
    by their own times (OBX-14, or a CDA observation's effectiveTime) only: the T0 was superseded."""
    t120 = datetime(2026, 11, 2, 10)
    hgpo = [_obs("f1", 1, "5,0", observed=T8), _obs("f1", 2, "7,8", observed=T9), _obs("f1", 3, "5,0", observed=t120)]
    assert _current(*hgpo) == ["f1:1", "f1:2", "f1:3"]
    # delivered again whole (another file): each point continues its own result, by its time
    again = [_obs("f2", n, r["value_raw"], observed=r["observed_at"], message="M9", seq=2)
             for n, r in reversed(list(enumerate(hgpo, start=1)))]
    got = _flags(pl.DataFrame([*hgpo, *again]))
    assert {k: sup for k, (cur, sup) in got.items() if k.startswith("f1")} == {
        "f1:1": "f2:1", "f1:2": "f2:2", "f1:3": "f2:3"}


def test_a_correction_of_one_isolate_replaces_that_isolate():
    rows = [_obs("a", 1, "S", "1"), _obs("a", 2, "S", "2"),
            _obs("b", 1, "R", "2", message="M2", status="C", seq=2, validated=V2)]
    assert _flags(pl.DataFrame(rows)) == {"a:1": (True, None), "a:2": (False, "b:1"), "b:1": (True, None)}


def test_the_segur_copy_without_sub_id_nor_own_time_is_still_that_result():
    """The rows of a CDA embedded beside the OBX segments state no sub-ID and no own time (the HL7
    parser gives them none): each is its OBX's result again, and isolates stay two results."""
    segur = [_obs("f1", 1, "S", "1", observed=T8), _obs("f1", 2, "S", "2", observed=T8),
             _obs("f1", 3, "S"), _obs("f1", 4, "S")]
    current = _current(*segur)
    assert len(current) == 2 and "f1:4" in current
    assert _current(_obs("f1", 1, "5,4", "1", observed=T8), _obs("f1", 2, "5,4")) == ["f1:2"]


_HL7_MSH = "MSH|^~\\&|SGL|330028762|D|D|20261105120000||ORU^R01^ORU_R01|{mid}|P|2.5|||||FRA|UNICODE UTF-8\r"
_HL7_PID = ("PID|1||{nir}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||MARTIN^HELENE^^^^^L||19790717|F"
            "|||^^^^69003^^H\r")


def _cda_hgpo() -> str:
    """One CR-BIO document: one specimen-collection procedure (08:00), three glucose observations with
    their own effectiveTime, 5.0 / 7.8 / 5.0 (QA fmt F1, cda_hgpo.xml)."""
    obs = "".join(
        '<component><observation classCode="OBS" moodCode="EVN"><code code="2345-7" codeSystem="2.16.840.1.113883.6.1">'
        '<translation code="GLY" codeSystem="1.2.3.4.833" displayName="Glycémie"/></code>'
        f'<statusCode code="completed"/><effectiveTime value="20261104{h}0000"/>'
        f'<value xsi:type="PQ" value="{v}" unit="mmol/L"/></observation></component>\n'
        for h, v in (("08", "5.0"), ("09", "7.8"), ("10", "5.0")))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n<id root="1.2.3.4" extension="HGPOCDA"/>\n'
            '<recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="290075447184920"/>'
            '<addr use="H"><postalCode>69003</postalCode></addr><patient><name><given>MARIE</given>'
            '<family>MARTIN</family></name><administrativeGenderCode code="F"/><birthTime value="19790717"/>'
            '</patient></patientRole></recordTarget>\n'
            '<legalAuthenticator><time value="20261105110000"/></legalAuthenticator>\n'
            '<inFulfillmentOf><order><id root="1.2.3" extension="HGCDA"/></order></inFulfillmentOf>\n'
            '<component><structuredBody><component><section><entry><act classCode="ACT" moodCode="EVN">\n'
            '<entryRelationship typeCode="COMP"><procedure classCode="PROC" moodCode="EVN">'
            '<effectiveTime value="20261104080000"/></procedure></entryRelationship>\n'
            '<entryRelationship typeCode="COMP"><organizer classCode="BATTERY" moodCode="EVN">\n'
            f'{obs}</organizer></entryRelationship></act></entry>'
            '</section></component></structuredBody></component></ClinicalDocument>\n')


def test_a_tolerance_test_and_an_antibiogram_keep_every_measurement_end_to_end(tmp_path):
    """QA fmt F1 (repro hgpo_abg.hl7, cda_hgpo.xml): HL7 HGPO points told apart by OBX-4 and OBX-14,
    an antibiogram's isolates by OBX-4, a CR-BIO HGPO by its observations' own times: every
    measurement is a current result (the T0 5.0 and isolate 1's AMX S were superseded)."""
    from tests.epi_support import run_steps
    from warehouse import catalog as cat

    obx = "OBX|{n}|{vt}|{code}|{sub}|{value}|{unit}|||||F|||{t}|||||{v}\r"
    hgpo = (_HL7_MSH.format(mid="HGPO1") + _HL7_PID.format(nir="279072910085143")
            + "OBR|1||HG1|HGPO^Hyperglycémie provoquée^L|||20261104080000|||||||20261104080000\r"
            + "".join(obx.format(n=i, vt="NM", code="GLY^Glycémie^L^2345-7^^LN", sub=i, value=v, unit="mmol/L",
                                 t=t, v="20261104180000")
                      for i, v, t in ((1, "5.0", "20261104080000"), (2, "7.8", "20261104090000"),
                                      (3, "5.0", "20261104100000"))))
    abg = (_HL7_MSH.format(mid="ABG1") + _HL7_PID.format(nir="176019305038591")
           + "OBR|1||UR1|ECBU^ECBU^L|||20261104080000|||||||20261104090000\r"
           + "".join(obx.format(n=i, vt="ST", code=code, sub=sub, value=v, unit="", t="20261104080000",
                                v="20261105180000")
                     for i, (code, sub, v) in enumerate((("AMX^Amoxicilline^L", 1, "S"), ("AMX^Amoxicilline^L", 2, "S"),
                                                         ("GEN^Gentamicine^L", 1, "S"), ("GEN^Gentamicine^L", 2, "R")),
                                                        start=1)))
    home = tmp_path / "home"
    for lab, name, data in (("labhl7", "hgpo_abg.hl7", hgpo + abg), ("labcda", "cda_hgpo.xml", _cda_hgpo())):
        (home / "landing" / lab).mkdir(parents=True)
        (home / "landing" / lab / name).write_text(data, encoding="utf-8")
    ctx, _ = run_steps(home)
    fct = ctx.wh.read(cat.FCT_LAB_RESULTS).sort("source", "line_no")
    got = fct.select("source", "local_code", "value_raw", "observation_sub_id",
                     pl.col("observed_at").dt.strftime("%H:%M"), "is_current").rows()
    assert got == [
        ("labcda", "GLY", "5.0", None, "08:00", True), ("labcda", "GLY", "7.8", None, "09:00", True),
        ("labcda", "GLY", "5.0", None, "10:00", True),
        ("labhl7", "GLY", "5.0", "1", "08:00", True), ("labhl7", "GLY", "7.8", "2", "09:00", True),
        ("labhl7", "GLY", "5.0", "3", "10:00", True),
        ("labhl7", "AMX", "S", "1", "08:00", True), ("labhl7", "AMX", "S", "2", "08:00", True),
        ("labhl7", "GEN", "S", "1", "08:00", True), ("labhl7", "GEN", "R", "2", "08:00", True)]
    # collected_at stays the specimen's collection (OBR-7, the procedure): what SI-DEP counts by
    assert fct["collected_at"].dt.strftime("%H:%M").unique().to_list() == ["08:00"]


def test_a_segur_message_whose_obx_states_the_collection_time_publishes_each_result_once(tmp_path):
    """OBX-14 holds the collection time (IHE LAB, the NIST samples) while the embedded CR-BIO's
    observation says 10:15, its analysis time: the document's rows get no own time, so the OBX and
    its copy stay one result (docs/formats.md)."""
    from pathlib import Path

    cda = (Path(__file__).parent / "fixtures" / "cda" / "crbio_sample.xml").read_bytes()
    assert b'<effectiveTime value="20240305101500+0100"/>' in cda
    glucose = _segur_glucose(tmp_path, "OBX|1|NM|GLY^Glycémie à jeun^L^2345-7^Glucose^LN|1|5.4|mmol/L|3.9-5.8|N|||F|||"
                                       "20240305073500")
    assert glucose.height == 2
    assert glucose["is_current"].to_list() == [False, True]
    assert glucose["observed_at"].dt.strftime("%H:%M").to_list() == ["07:35", None]


def test_a_late_correction_corrects_its_own_day_only_and_alone_is_not_current():
    """A C or D validated over 366 days after its collection (QA regr F1): it corrects a result of
    its collection day (QA cal F5), never the same person's result of another day, and a result it
    alone forms is not current; an F joining that result makes it one again."""
    def rows(*spec):
        return pl.DataFrame(
            [{"version_key": "lab|req|PCR|", "file_id": f, "result_no": 1, "file_seq": seq,
              "placed_at": validated, "result_status": st, "person_key": "p", "collected_date": collected.date(),
              "collected_at": collected, "validated_at": validated}
             for f, seq, st, collected, validated in spec])

    y25, y26, later = datetime(2025, 11, 2, 10), datetime(2026, 11, 2, 10), datetime(2026, 11, 5, 9)
    same_day = _flags(rows(("a", 1, "F", y25, datetime(2025, 11, 2, 18)), ("b", 2, "C", y25, later)))
    assert same_day == {"a:1": (False, "b:1"), "b:1": (True, None)}
    other_day = _flags(rows(("a", 1, "F", y26, datetime(2026, 11, 2, 18)), ("b", 2, "C", y25, later)))
    assert other_day == {"a:1": (True, None), "b:1": (False, None)}
    deleted = _flags(rows(("a", 1, "F", y26, datetime(2026, 11, 2, 18)), ("b", 2, "D", y25, later)))
    assert deleted == {"a:1": (True, None), "b:1": (False, None)}
    alone_twice = _flags(rows(("b", 1, "C", y25, later), ("c", 2, "C", y25, datetime(2026, 11, 6, 9))))
    assert alone_twice == {"b:1": (False, "c:1"), "c:1": (False, None)}
    # not late (validated within the year): a corrected date moves the result, as before
    moved = _flags(rows(("a", 1, "F", y26, datetime(2026, 11, 2, 18)), ("b", 2, "C", datetime(2026, 11, 1, 10), later)))
    assert moved == {"a:1": (False, "b:1"), "b:1": (True, None)}


def test_a_message_sent_again_with_its_own_time_stamped_again_is_that_result_again():
    """QA regr F5: message X1 sent twice in one file, OBX-14 10:00:00 then 10:00:01: two current
    results, and a correction stating 09:00 the next day replaced one, the positive still counting.
    Own times under 5 minutes apart are one time; a tolerance test's points (30 minutes) stay two."""
    def rows(*spec):
        return pl.DataFrame(
            [{"version_key": "lab|req|PCR|", "file_id": f, "result_no": n, "file_seq": seq,
              "placed_at": datetime(2026, 11, 2, 18), "result_status": st, "person_key": "p", "collected_date": D1,
              "collected_at": datetime(2026, 11, 2, 8), "message_key": "m1" if f == "a" else "m2",
              "observed_at": observed, "value_raw": value}
             for f, n, seq, st, observed, value in spec])

    sent_twice = rows(("a", 1, 1, "F", datetime(2026, 11, 2, 10, 0, 0), "DETECTE"),
                      ("a", 2, 1, "F", datetime(2026, 11, 2, 10, 0, 1), "DETECTE"))
    assert _flags(sent_twice) == {"a:1": (False, "a:2"), "a:2": (True, None)}
    corrected = pl.concat([sent_twice, rows(("b", 1, 2, "C", datetime(2026, 11, 3, 9), "NEGATIF"))])
    assert [cur for cur, _ in _flags(corrected).values()] == [False, False, True]
    tolerance = rows(("a", 1, 1, "F", datetime(2026, 11, 2, 10, 0), "5,0"), ("a", 2, 1, "F", datetime(2026, 11, 2, 10, 30), "5,0"))
    assert _flags(tolerance) == {"a:1": (True, None), "a:2": (True, None)}
