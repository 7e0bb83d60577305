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

``reads_not_agent(text, agents)`` is True when the text is read as saying the agent was *not*
found (QA numbers F6): such a result is a negative for the rule. It never makes a case (the rule
counts only ``names_agent``); it is only kept off the list of wordings to teach
(quality.unrecognised_results, transforms/terminology/unrecognised.py). Two readings, both strict:

* the agent negated, in one of a few fixed shapes (the agent's name alone, optionally 'sp'/'spp',
  never a species or serogroup after a genus agent: 'Legionella pneumophila non isolée' says
  nothing of the other species): '<agent> non isolé(e)' (retrouvé, identifié, détecté, mis en
  évidence), '<agent> absent(e)', '<agent> négatif(ve)', '<agent> : culture négative', 'Pas de
  <agent> [isolé...]', 'Absence de <agent>', 'Aucun(e) <agent> [isolé...]', optionally preceded by
  'Culture'/'Recherche (de)' and, for a virus, 'Virus de (la)'; English 'not isolated', 'no <agent>
  isolated'. 'Legionella non pneumophila' (a species group: a positive) and 'Legionella détectée,
  culture négative' match none;
* another organism and nothing else: a genus of ``OTHER_GENERA`` (common clinical genera: 
  'Streptococcus pneumoniae', 'Pseudomonas aeruginosa', 'Escherichia coli', 'Brucella melitensis'
  on a Legionella culture), optionally with its species and, as in ``names_agent``, words of
  identification or presence and numbers; never when the text names one of ``agents`` anywhere.

Any other text (an unknown word, a pending culture, a doubt, 'Legionella non pneumophila') is
neither: it stays unrecognised and listed for a person to read.
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


# Common genera of clinical microbiology (bacteria, fungi, parasites): a text naming one of them,
# and not the rule's agent, names another organism (``reads_not_agent``). Normalised (no accents,
# lower case); a genus that is an agent of the rule is never read as another organism.
OTHER_GENERA = frozenset((
    "acinetobacter", "actinomyces", "aeromonas", "aspergillus", "bacillus", "bacteroides", "bartonella",
    "bordetella", "borrelia", "brucella", "burkholderia", "campylobacter", "candida", "chlamydia",
    "chlamydophila", "citrobacter", "clostridioides", "clostridium", "corynebacterium", "coxiella",
    "cryptococcus", "enterobacter", "enterococcus", "escherichia", "francisella", "fusobacterium",
    "haemophilus", "hafnia", "helicobacter", "klebsiella", "legionella", "leptospira", "listeria",
    "moraxella", "morganella", "mycobacterium", "mycoplasma", "neisseria", "nocardia", "pasteurella",
    "plasmodium", "prevotella", "proteus", "providencia", "pseudomonas", "rickettsia", "salmonella",
    "serratia", "shigella", "staphylococcus", "stenotrophomonas", "streptococcus", "treponema",
    "vibrio", "yersinia",
))
_FOUND = (r"(?:isole|isolee|isoles|isolees|retrouve|retrouvee|retrouves|retrouvees|identifie|identifiee|"
          r"identifies|identifiees|detecte|detectee|detectes|detectees|mise? en evidence|mis(?:es)? en evidence)")
_NEGATED = (r"(?:negatif|negative|negatifs|negatives|absent|absente|absents|absentes|non " + _FOUND
            + r"|not (?:isolated|detected|found|identified))")
_LEAD = r"(?:(?:culture|recherche|identification)(?: (?:de|d|des|du))? )?(?:virus (?:de la |de l |du |de |d )?)?"
_AGENT = r"\x00(?: spp?)?"
_NEGATION_SHAPES = re.compile(
    r"^(?:" + _LEAD + _AGENT + r"(?: (?:culture|recherche))? " + _NEGATED
    + r"|(?:pas de|pas d|absence de|absence d|aucun|aucune|no) " + _LEAD + _AGENT + r"(?: " + _FOUND
    + r"| isolated| detected| found)?)$")


def reads_not_agent(text: str | None, agents: tuple[tuple[str, ...], ...]) -> bool:
    """Whether ``text`` says the agent was not found (a negation of it) or names another organism
    and nothing else (module docstring); False when it names the agent (``names_agent``)."""
    if not text or not agents or names_agent(text, agents):
        return False
    if "^" in text:  # HL7 coded value: its label, else its code
        parts = [p.strip() for p in text.split("^")]
        text = parts[1] if len(parts) > 1 and parts[1] else parts[0]
    words = _words(text)
    # the agent's names, longest first, each occurrence replaced by one marker
    marked: list[str] = []
    i, hits = 0, 0
    while i < len(words):
        hit = next((a for a in agents if tuple(words[i:i + len(a)]) == a), None)
        if hit is None:
            marked.append(words[i])
            i += 1
        else:
            marked.append("\x00")
            hits += 1
            i += len(hit)
    if hits:
        return hits == 1 and bool(_NEGATION_SHAPES.match(" ".join(marked)))
    return _names_other_organism(words, {w for a in agents for w in a})


def _names_other_organism(words: list[str], agent_words: set[str]) -> bool:
    named = False
    i = 0
    while i < len(words):
        w = words[i]
        if w in OTHER_GENERA and w not in agent_words:
            named = True
            i += 1
            nxt = words[i] if i < len(words) else ""
            if (nxt.isalpha() and len(nxt) >= 3 and nxt not in CLASS_OF_WORD and nxt not in OTHER_GENERA
                    and nxt not in IDENTIFICATION_WORDS and nxt not in _NOT_SPECIES):
                i += 1  # its species ('Streptococcus pneumoniae', 'Escherichia coli')
            continue
        if w in IDENTIFICATION_WORDS or _NUMBER.match(w):
            i += 1
            continue
        return False
    return named


# words that are not a species after a genus: a negation or a doubt makes the text unread
_NOT_SPECIES = frozenset(("non", "pas", "absence", "aucun", "aucune", "not", "no", "probable", "possible",
                          "suspect", "suspecte", "cours", "attente"))
