"""Machine-readable reason codes for quarantined rows and files.

Every quarantined row carries one or more of these codes plus the offending column (or null when
the reason concerns the whole line). Parsers, the pandera model and the generator's truth all use
this one vocabulary.
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    # line / message level (parsers)
    "MALFORMED_LINE": "the line does not have the expected structure (field count, quoting)",
    "MALFORMED_MESSAGE": "the message or record is broken (missing or unreadable segments)",
    "DUPLICATE_ROW": "exact duplicate of an earlier line of the same file",
    "TEST_IDENTITY": "the INS carries a test OID (.10/.11) that must never appear in production",
    "NO_RESULT": "a well-formed message, document or OBX that carries no result to extract (no OBX, a CDA without result observation, a PDF in an OBX of type ED)",
    "UNSAFE_XML": "the XML declares a DOCTYPE or entities: refused unread (no entity is ever expanded)",
    "UNSUPPORTED_MESSAGE_TYPE": "an HL7 message whose type (MSH-9) is not ORU^R01: an order (ORM, OML), an admission (ADT), an acknowledgement, or results in another structure (OUL^R22/R24, ORU^R30-R32); the whole message is refused",
    "NON_PRODUCTION": "an HL7 message whose processing ID (MSH-11) is T (training), D (debugging) or another value than P: not production data, the whole message is refused",
    "EMBEDDED_DOCUMENT_INVALID": "a document embedded in a result (base64 CDA in an OBX of type ED) cannot be decoded or is not well-formed",
    # value level (parsers and the pandera model)
    "MISSING_VALUE": "a required field is empty",
    "NIR_FORMAT": "the NIR/INS is not 13 characters + a 2-digit key",
    "NIR_KEY": "the NIR/INS key does not match its number",
    "DATE_INVALID": "a date or time cannot be parsed or does not exist",
    "DATE_ORDER": "dates are impossible together (collection after validation, birth after collection, future)",
    "SEX_INVALID": "the sex sent could not be read (not F, M, H, 1, 2, a word such as féminin/masculin, or a code for an unknown sex): since PARSER_VERSION 6 the result is kept with an unknown sex and this flag in dq_flags; a quarantine row only when the result is refused for another reason",
    "POSTAL_CODE_INVALID": "postal code is not 5 digits (in earlier runs only: it is now a data-quality flag on a kept result)",
    "LOINC_CHECK": "a LOINC code given by the source fails its check digit",
    "STATUS_INVALID": "result status is not one of F, C, X, D",
    "VALUE_INVALID": "a value cannot be read: a number that is not one (or not finite), a comparator without its bound, a CDA coded value whose text (a reference to the narrative) is not found",
    # file level
    "UNPARSEABLE_FILE": "the file cannot be read in any supported format",
    "UNSAFE_FILE_NAME": "the file name is hostile (path traversal, control characters...): not opened",
    "NOT_A_FILE": "a landing entry that is a symbolic link: never followed, not opened",
    "EMPTY_FILE": "the file holds no data",
    "FILE_GONE": "the file left the landing area between discovery and reading (moved, renamed or deleted during the run): not logged, read by the next run that finds it",
    "FILE_UNREADABLE": "the file cannot be read (permissions, I/O error: the detail gives the operating system's error): logged as failed, tried again by every later run and loaded once readable",
    "FOLDER_UNREADABLE": "a landing folder cannot be listed (permissions, I/O error): the files inside are not seen; logged as failed, listed again by every later run",
    "NOT_IN_LAB_FOLDER": "a file at the root of the landing area, outside any lab folder: not read (the folder names the lab; deliver into landing/<lab>/)",
    "LAB_FOLDER_NAME": ("a file in a folder at the root of the landing area whose name cannot be a lab's (a blank, "
                        "a date or a NIR in it: a patient's folder?): not read, the folder never named "
                        "(deliver into landing/<lab>/)"),
    "HEADER_INVALID": "the file's header does not name the required columns",
}


def check(code: str) -> str:
    """Return ``code`` if it is a known reason, else raise (a typo must not invent a reason)."""
    if code not in REASONS:
        raise KeyError(f"unknown reason code {code!r}")
    return code


# data-quality flags of kept results (staging's dq_flags, ';'-joined): the result counts, with what
# it lacks (warehouse/catalog.py, column dq_flags); the data-quality report counts them per lab
FLAGS: dict[str, str] = {
    "AGE_UNKNOWN": "no age: in the all-ages counts only",
    "BIRTH_DATE_PARTIAL": "the birth date was sent with its year, or year and month, only (age unknown)",
    "BIRTH_DATE_INVALID": "the birth date sent could not be read or is impossible for this result (age unknown)",
    "SEX_UNKNOWN": "no sex: in P and T, in neither the women's nor the men's counts",
    "SEX_INVALID": "the sex sent could not be read (sex unknown)",
    "POSTAL_CODE_INVALID": "the postal code is not 5 digits",
    "POSTAL_CODE_PADDED": "the postal code was sent with 4 digits, its leading zero lost (a spreadsheet read it as a number: 1000 for 01000), and read as 0 + those digits, a known postal code",
    "DEP_UNKNOWN": "no département of residence: in the France counts only when another result gives it",
    "IDENTITY_IN_TEXT": "a NIR, name or birth date was masked in the free text",
    "FINESS_INVALID": "the lab's FINESS is not 9 characters or fails its check digit",
}
