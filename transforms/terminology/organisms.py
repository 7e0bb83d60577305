"""Results that name an organism: a culture or an identification reported as the agent found.

An identification test ('Legionella sp identified in Specimen by Organism specific culture',
'Rabies virus identified', an HIV immunoblot [Identifier]) is answered with the organism's name,
not with a verdict: 'Legionella pneumophila sérogroupe 1', the HL7 coded value
'Legionella pneumophila^Legionella pneumophila^L', 'Virus de la rage isolé'. qualitative.py gives
such a text no class (it is not a verdict); the MDO rules whose condition is ``organism``
(seeds/mdo_rules.md) read it with ``names_agent``.

``names_agent(text, agents)`` is True when the text names one of ``agents`` (phrases such as
'legionella', 'virus de la rage', 'vih 1', compared without case, accents or punctuation, as
consecutive words) and every other word of the text belongs to these small lists:

* a word of identification or presence (``IDENTIFICATION_WORDS``: isolé, identifié, mis en
  évidence, culture, souche, sp, spp, sérogroupe, type... and the positive verdicts of
  qualitative.py: positif, présence, détecté...), a number ('sérogroupe 1', 'VIH-1'), a small word
  (de, la, du...);
* the species right after the agent's name, when it is written like a Latin species epithet
  (letters ending in -a, -ae, -i, -is, -us, -um: 'pneumophila', 'longbeachae', 'micdadei',
  'melitensis', 'abortus'), so that a genus-level agent ('legionella') accepts every species of
  the genus.

Anything else is not read as naming the agent, never guessed: a negation ('non isolé', 'absence
de', 'pas de', 'négatif', 'non détecté'), a doubt, a pending culture ('en cours'), another
organism ('Pseudomonas aeruginosa'), a request. A species-level agent ('legionella pneumophila')
is not named by the genus alone ('Legionella sp.'). An HL7 coded value ``code^label^system`` is
read by its label (by its code when there is no label).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from transforms.terminology.qualitative import CLASS_OF_WORD, normalise_word

IDENTIFICATION_WORDS = frozenset({
    "isole", "isolee", "isoles", "isolees", "isolement", "identifie", "identifiee", "identifies", "identifiees",
    "identification", "mis", "mise", "en", "evidence", "culture", "cultures", "souche", "souches",
    "sp", "spp", "species", "espece", "serogroupe", "serogroup", "sg", "serotype", "serovar", "biovar", "biotype",
    "type", "groupe", "complexe", "virus", "adn", "arn", "dna", "rna", "et", "and",
    "isolated", "identified", "found",
    "de", "d", "du", "des", "la", "le", "l", "a", "par", "sur",
} | {w for w, cls in CLASS_OF_WORD.items() if cls == "POS" and " " not in w and w.isalpha()})
_EPITHET = re.compile(r"^[a-z]{4,}(?:a|ae|i|is|us|um)$")
_NUMBER = re.compile(r"^\d{1,3}$")


def agent_phrases(names: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """The agents' names as word tuples (normalised as texts are), longest first; empty names dropped."""
    out = {tuple(_words(n)) for n in names}
    return tuple(sorted((p for p in out if p), key=lambda p: (-len(p), p)))


def _words(text: str) -> list[str]:
    return normalise_word(text.replace("'", " ").replace("\u2019", " ")).split()


def names_agent(text: str | None, agents: tuple[tuple[str, ...], ...]) -> bool:
    """Whether ``text`` names one of ``agents`` (``agent_phrases``) and nothing else (module docstring)."""
    if not text or not agents:
        return False
    if "^" in text:  # HL7 coded value: its label, else its code
        parts = [p.strip() for p in text.split("^")]
        text = parts[1] if len(parts) > 1 and parts[1] else parts[0]
    words = _words(text)
    named = False
    i = 0
    while i < len(words):
        hit = next((a for a in agents if tuple(words[i:i + len(a)]) == a), None)
        if hit is not None:
            named = True
            i += len(hit)
            nxt = words[i] if i < len(words) else ""
            if _EPITHET.match(nxt) and nxt not in CLASS_OF_WORD:
                i += 1  # the species of a genus ('Legionella pneumophila')
            continue
        w = words[i]
        if w in IDENTIFICATION_WORDS or _NUMBER.match(w):
            i += 1
            continue
        return False
    return named


def names_within(phrase: tuple[str, ...], text: str | None) -> bool:
    """Whether the words of ``phrase`` appear, consecutive, in ``text`` (a LOINC name, for instance)."""
    words = _words(text or "")
    return bool(phrase) and any(tuple(words[i:i + len(phrase)]) == phrase for i in range(len(words)))
