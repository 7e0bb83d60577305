"""Word lists for the generator: names, qualitative result words, unmapped local tests.

Every string here is encodable in Latin-1 and holds no ';' and no '"' (the CSV extract is never
quoted).
"""

from __future__ import annotations

import unicodedata

FAMILY_NAMES: tuple[str, ...] = (
    "Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau", "Laurent",
    "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel", "Fournier", "Girard",
    "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent", "Muller", "Lefebvre", "Faure", "André",
    "Mercier", "Blanc", "Guérin", "Boyer", "Garnier", "Chevalier", "François", "Legrand", "Gauthier", "Garcia",
    "Perrin", "Robin", "Clément", "Morin", "Nicolas", "Henry", "Roussel", "Mathieu", "Gautier", "Masson",
    "Marchand", "Duval", "Denis", "Dumont", "Marie", "Lemaire", "Noël", "Meyer", "Dufour", "Meunier",
    "Brun", "Blanchard", "Giraud", "Joly", "Rivière", "Lucas", "Brunet", "Gaillard", "Barbier", "Arnaud",
    "Martinez", "Gérard", "Roche", "Renard", "Schmitt", "Roy", "Leroux", "Colin", "Vidal", "Caron",
    "Picard", "Roger", "Fabre", "Aubert", "Lemoine", "Renaud", "Dumas", "Lacroix", "Olivier", "Philippe",
    "Bourgeois", "Pierre", "Benoît", "Rey", "Leclerc", "Payet", "Rolland", "Leclercq", "Guillaume", "Lecomte",
    "Lopez", "Jean", "Dupuis", "Guillot", "Hubert", "Berger", "Carpentier", "Sanchez", "Moulin", "Louis",
    "Deschamps", "Huet", "Vasseur", "Perez", "Boucher", "Fleury", "Royer", "Klein", "Jacquet", "Adam",
    "Poirier", "Marty", "Aubry", "Guyot", "Carré", "Charles", "Renault", "Charpentier", "Ménard", "Maillard",
    "Baron", "Bertin", "Bailly", "Hervé", "Schneider", "Fernandez", "Le Gall", "Collet", "Léger", "Bouvier",
    "Julien", "Prévost", "Millet", "Perrot", "Daniel", "Le Roux", "Cousin", "Germain", "Breton", "Besson",
    "Langlois", "Rémy", "Le Goff", "Pelletier", "Lévêque", "Perrier", "Leblanc", "Barré", "Lebrun", "Marchal",
    "Weber", "Mallet", "Hamon", "Boulanger", "Jacob", "Monnier", "Michaud", "Rodriguez", "Guichard", "Gillet",
    "Étienne", "Grondin", "Poulain", "Tessier", "Chevallier", "Collin", "Chauvin", "Da Silva", "Bouchet", "Gay",
    "Lemaître", "Bénard", "Maréchal", "Humbert", "Reynaud", "Antoine", "Hoarau", "Perret", "Barthélemy",
    "Cordier", "Pichon", "Lejeune", "Gilbert", "Lamy", "Delaunay", "Pasquier", "Carlier", "Laporte",
    "N'Diaye", "Diallo", "Nguyen", "Traoré", "Benali", "Haddad", "Saint-Martin", "Martin-Dupont",
    "Le Bihan", "Lefèvre-Durand", "D'Almeida", "De Oliveira", "Dos Santos", "Müller", "Sorel",
    "Ben Ahmed", "Kerbrat", "Quéméner", "Castaño", "Lopès", "Bouchard-Leclerc", "Da Costa",
)

FIRST_NAMES_F: tuple[str, ...] = (
    "Marie", "Jeanne", "Camille", "Léa", "Chloé", "Manon", "Emma", "Inès", "Zoé", "Élodie", "Hélène",
    "Anaïs", "Céline", "Sophie", "Nathalie", "Isabelle", "Sylvie", "Catherine", "Françoise", "Monique",
    "Geneviève", "Brigitte", "Valérie", "Sandrine", "Stéphanie", "Aurélie", "Mélanie", "Julie", "Lucie",
    "Clémence", "Noémie", "Maëlys", "Océane", "Justine", "Margaux", "Jade", "Louise", "Alice", "Lina",
    "Anne-Sophie", "Marie-Claire", "Marie-Thérèse", "Marie Christine", "Anne-Laure", "Josiane", "Ginette",
    "Yvette", "Thérèse", "Agnès", "Bérénice", "Adèle", "Rose", "Éléonore", "Fatima", "Aïcha", "Mariam",
    "Nadia", "Christiane", "Martine", "Danielle", "Odette", "Paulette", "Laëtitia", "Solène", "Gaëlle",
)

FIRST_NAMES_M: tuple[str, ...] = (
    "Jean", "Pierre", "Michel", "André", "Philippe", "Alain", "Jacques", "Bernard", "Daniel", "Patrick",
    "Nicolas", "Christophe", "Stéphane", "Sébastien", "Frédéric", "Laurent", "Julien", "Thomas", "Lucas",
    "Hugo", "Louis", "Gabriel", "Léo", "Raphaël", "Arthur", "Jules", "Adam", "Maël", "Noé", "Théo",
    "Mathéo", "Nathan", "Enzo", "Loïc", "Jérôme", "Hervé", "Benoît", "François", "Gérard", "René", "Joël",
    "Gaël", "Cédric", "Grégoire", "Jean-Pierre", "Jean-Luc", "Jean-Claude", "Jean-François", "Pierre-Yves",
    "Marc-Antoine", "Jean Marie", "Mohamed", "Karim", "Youssef", "Mamadou", "Bruno", "Didier", "Thierry",
    "Yannick", "Éric", "Rémi", "Clément", "Antoine", "Baptiste", "Quentin", "Aurélien", "Jean Baptiste",
)

# Words a lab writes for a qualitative result, per class. Serologies/antigens also use
# Présence/Absence. Douteux and Ininterprétable are class INVALID (counted in neither P nor T).
WORDS_POS = ("Positif", "POSITIF", "positif", "Détecté", "DETECTE", "détecté", "Positif")
WORDS_NEG = ("Négatif", "NEGATIF", "negatif", "négatif", "Non détecté", "NON DETECTE", "non detecte", "Négatif")
WORDS_INV = ("Douteux", "DOUTEUX", "Ininterprétable", "ININTERPRETABLE", "ininterpretable")
WORDS_POS_SERO = WORDS_POS + ("Présence", "PRESENCE", "présence")
WORDS_NEG_SERO = WORDS_NEG + ("Absence", "ABSENCE", "absence")

# Local tests a lab performs but has not mapped yet (code, label, unit, mean, sd, decimals).
UNMAPPED: dict[str, tuple[tuple[str, str, str, float, float, int], ...]] = {
    "labo_alpha": (("VITD", "Vitamine D (25-OH)", "ng/mL", 28.0, 10.0, 1),
                   ("TSH", "TSH ultrasensible", "mUI/L", 1.8, 0.9, 2),
                   ("PSA", "PSA total", "ng/mL", 1.5, 1.2, 2)),
    "labo_beta": (("25OHD", "25-OH vitamine D", "nmol/l", 70.0, 25.0, 0),
                  ("TSHUS", "TSH US", "mUI/l", 1.8, 0.9, 2),
                  ("B12", "Vitamine B12", "pg/ml", 400.0, 150.0, 0)),
    "labo_gamma": (("VITD25", "Vitamine D", "ng/mL", 28.0, 10.0, 1),
                   ("FOL", "Folates sériques", "ng/mL", 8.0, 3.0, 1),
                   ("CRPUS", "CRP ultrasensible", "mg/L", 3.0, 4.0, 1)),
    "labo_delta": (("0951", "VITAMINE D", "ng/ml", 28.0, 10.0, 1),
                   ("0952", "TSH", "mUI/l", 1.8, 0.9, 2),
                   ("0953", "MAGNESIUM", "mmol/l", 0.85, 0.08, 2)),
    "labo_epsilon": (("VD3", "Vitamine D3", "ng/mL", 28.0, 10.0, 1),
                     ("THYRO", "Thyréostimuline", "mUI/L", 1.8, 0.9, 2),
                     ("CRP", "Protéine C réactive", "mg/L", 5.0, 8.0, 1)),
}

# Countries of birth abroad (INSEE country codes, NIR positions 6-10 = 99 + code).
BIRTH_COUNTRIES = ("99350", "99352", "99351", "99139", "99127", "99134", "99109", "99341", "99243",
                   "99131", "99335", "99322")


def strip_accents(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


# Per lab: how its SGL writes names: (family style, first-name style); styles: "as_is", "upper",
# "upper_ascii", "ascii".
NAME_STYLES: dict[str, tuple[str, str]] = {
    "labo_alpha": ("upper", "as_is"),
    "labo_beta": ("upper_ascii", "as_is"),
    "labo_gamma": ("as_is", "as_is"),
    "labo_delta": ("upper", "upper"),
    "labo_epsilon": ("upper_ascii", "upper_ascii"),
}


def render_name(s: str, style: str) -> str:
    if style == "upper":
        return s.upper()
    if style == "upper_ascii":
        return strip_accents(s).upper()
    if style == "ascii":
        return strip_accents(s)
    return s
