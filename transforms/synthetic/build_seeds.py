"""Write the generator's hand-written seeds: tests catalog, labs and per-lab LOINC mappings.

The tables below are the single source; the CSV files under ``seeds/`` are committed and are what
the generator and the pipeline read at run time. Re-run after editing a table:

    .venv/bin/python -m transforms.synthetic.build_seeds

Every LOINC code used must exist in ``seeds/reference/loinc.csv`` (checked here and in the tests).
"""

from __future__ import annotations

import csv
from pathlib import Path

from stdnum import luhn

SEEDS = Path(__file__).resolve().parents[2] / "seeds"

# test_key, loinc_num, label_fr, kind, canonical_unit (UCUM), mean, sd, decimals, panel
CATALOG: list[tuple] = [
    # numération formule sanguine
    ("hemoglobine", "718-7", "Hémoglobine", "num", "g/dL", 13.8, 1.6, 1, "nfs"),
    ("leucocytes", "6690-2", "Leucocytes", "num", "10*9/L", 7.2, 2.2, 2, "nfs"),
    ("erythrocytes", "789-8", "Érythrocytes", "num", "10*12/L", 4.6, 0.5, 2, "nfs"),
    ("hematocrite", "4544-3", "Hématocrite", "num", "%", 41.0, 4.0, 1, "nfs"),
    ("vgm", "30428-7", "Volume globulaire moyen", "num", "fL", 90.0, 5.0, 1, "nfs"),
    ("tcmh", "28539-5", "Teneur corpusculaire moyenne en hémoglobine", "num", "pg", 30.0, 2.0, 1, "nfs"),
    ("ccmh", "28540-3", "Concentration corpusculaire moyenne en hémoglobine", "num", "g/dL", 33.5, 1.2, 1, "nfs"),
    ("plaquettes", "777-3", "Plaquettes", "num", "10*9/L", 250.0, 65.0, 0, "nfs"),
    ("neutrophiles", "26499-4", "Polynucléaires neutrophiles", "num", "10*9/L", 4.3, 1.6, 2, "nfs"),
    ("lymphocytes", "26474-7", "Lymphocytes", "num", "10*9/L", 2.1, 0.7, 2, "nfs"),
    ("monocytes", "26484-6", "Monocytes", "num", "10*9/L", 0.55, 0.2, 2, "nfs"),
    ("eosinophiles", "26449-9", "Polynucléaires éosinophiles", "num", "10*9/L", 0.2, 0.12, 2, "nfs"),
    # ionogramme et fonction rénale
    ("sodium", "2951-2", "Sodium", "num", "mmol/L", 139.5, 3.0, 0, "ionogramme"),
    ("potassium", "2823-3", "Potassium", "num", "mmol/L", 4.2, 0.4, 1, "ionogramme"),
    ("chlorure", "2075-0", "Chlorure", "num", "mmol/L", 102.0, 3.0, 0, "ionogramme"),
    ("uree", "22664-7", "Urée", "num", "mmol/L", 5.8, 2.0, 1, "ionogramme"),
    ("creatinine", "14682-9", "Créatinine", "num", "umol/L", 82.0, 22.0, 0, "ionogramme"),
    # bilan hépatique
    ("alat", "1742-6", "Alanine aminotransférase (ALAT)", "num", "U/L", 26.0, 14.0, 0, "bilan_hepatique"),
    ("asat", "1920-8", "Aspartate aminotransférase (ASAT)", "num", "U/L", 25.0, 11.0, 0, "bilan_hepatique"),
    ("ggt", "2324-2", "Gamma-glutamyltransférase", "num", "U/L", 32.0, 25.0, 0, "bilan_hepatique"),
    ("pal", "6768-6", "Phosphatases alcalines", "num", "U/L", 78.0, 25.0, 0, "bilan_hepatique"),
    ("bilirubine", "14631-6", "Bilirubine totale", "num", "umol/L", 10.0, 5.0, 0, "bilan_hepatique"),
    # bilan lipidique
    ("cholesterol", "2093-3", "Cholestérol total", "num", "g/L", 1.95, 0.40, 2, "bilan_lipidique"),
    ("hdl", "2085-9", "Cholestérol HDL", "num", "g/L", 0.55, 0.15, 2, "bilan_lipidique"),
    ("triglycerides", "2571-8", "Triglycérides", "num", "g/L", 1.20, 0.60, 2, "bilan_lipidique"),
    # glycémie
    ("glucose", "14749-6", "Glucose", "num", "mmol/L", 5.4, 1.1, 2, "glycemie"),
    ("hba1c", "4548-4", "Hémoglobine glyquée (HbA1c)", "num", "%", 5.8, 0.8, 1, "hba1c"),
    # protéines
    ("proteines", "2885-2", "Protéines totales", "num", "g/L", 71.0, 5.0, 0, "proteines"),
    ("albumine", "1751-7", "Albumine", "num", "g/L", 41.0, 4.0, 1, "proteines"),
    ("ferritine", "2276-4", "Ferritine", "num", "ug/L", 120.0, 90.0, 0, "ferritine"),
    # coagulation
    ("tca", "14979-9", "Temps de céphaline activée", "num", "s", 31.0, 4.0, 1, "coagulation"),
    ("tp", "5894-1", "Taux de prothrombine", "num", "%", 92.0, 12.0, 0, "coagulation"),
    # SARS-CoV-2
    ("sars_cov2_pcr", "94500-6", "SARS-CoV-2 ARN (RT-PCR)", "qual", "", "", "", "", "covid_pcr"),
    ("sars_cov2_ag", "94558-4", "SARS-CoV-2 antigène (test rapide)", "qual", "", "", "", "", "covid_ag"),
    # maladies à déclaration obligatoire (qualitatifs)
    ("hav_igm", "22314-9", "Hépatite A IgM", "qual", "", "", "", "", "hepatites"),
    ("hbs_ag", "5196-1", "Antigène HBs", "qual", "", "", "", "", "hepatites"),
    ("measles_igm", "21503-8", "Rougeole IgM", "qual", "", "", "", "", "rougeole"),
    ("legionella_ag_urine", "31870-9", "Antigène urinaire Legionella pneumophila", "qual", "", "", "", "",
     "legionellose"),
    ("listeria_pcr", "61369-5", "Listeria monocytogenes ADN (PCR)", "qual", "", "", "", "", "listeriose"),
    ("meningo_pcr", "49671-1", "Neisseria meningitidis ADN (PCR)", "qual", "", "", "", "", "meningocoque"),
    ("dengue_igm", "25338-5", "Dengue IgM", "qual", "", "", "", "", "dengue"),
    ("chik_igm", "57934-2", "Chikungunya IgM", "qual", "", "", "", "", "chikungunya"),
    ("tb_pcr", "38379-4", "Mycobacterium tuberculosis complexe ADN (PCR)", "qual", "", "", "", "", "tuberculose"),
]

# source, finess body (8 digits; the Luhn key is appended), name, encoding, date_style, decimal
LABS: list[tuple] = [
    ("labo_alpha", "69000123", "Laboratoire Alpha Biologie Lyon", "utf-8", "dmy", "comma"),
    ("labo_beta", "75004567", "Laboratoire Beta Paris Centre", "latin-1", "dmy", "comma"),
    ("labo_gamma", "13001234", "Gamma Bio Marseille", "utf-8", "compact", "comma"),
    ("labo_delta", "33002876", "Delta Analyses Bordeaux", "utf-8", "dmy", "comma"),
    ("labo_epsilon", "59003412", "Epsilon Biologie Lille", "latin-1", "compact", "comma"),
]

OPEN_FROM = "2020-01-01"

# Per lab: test_key -> (local_code, local_label, unit as the lab writes it, specimen).
# Units differing from the canonical one are converted by the generator (see units.py).
_S, _SE, _PL, _CI, _U, _NP = "Sang", "Sérum", "Plasma", "Plasma citraté", "Urine", "Écouvillon nasopharyngé"
MAPPINGS: dict[str, dict[str, tuple[str, str, str, str]]] = {
    "labo_alpha": {
        "hemoglobine": ("HB", "Hémoglobine", "g/dL", _S),
        "leucocytes": ("GB", "Leucocytes", "G/L", _S),
        "erythrocytes": ("GR", "Hématies", "T/L", _S),
        "hematocrite": ("HT", "Hématocrite", "%", _S),
        "vgm": ("VGM", "V.G.M.", "fL", _S),
        "tcmh": ("TCMH", "T.C.M.H.", "pg", _S),
        "ccmh": ("CCMH", "C.C.M.H.", "g/dL", _S),
        "plaquettes": ("PLQ", "Plaquettes", "G/L", _S),
        "neutrophiles": ("PNN", "Polynucléaires neutrophiles", "G/L", _S),
        "lymphocytes": ("LYMPH", "Lymphocytes", "G/L", _S),
        "monocytes": ("MONO", "Monocytes", "G/L", _S),
        "eosinophiles": ("PNE", "Polynucléaires éosinophiles", "G/L", _S),
        "sodium": ("NA", "Sodium", "mmol/L", _SE),
        "potassium": ("K", "Potassium", "mmol/L", _SE),
        "chlorure": ("CL", "Chlore", "mmol/L", _SE),
        "uree": ("UREE", "Urée", "mmol/L", _SE),
        "creatinine": ("CREA", "Créatinine", "µmol/L", _SE),
        "alat": ("ALAT", "ALAT (TGP)", "UI/L", _SE),
        "asat": ("ASAT", "ASAT (TGO)", "UI/L", _SE),
        "ggt": ("GGT", "Gamma GT", "UI/L", _SE),
        "pal": ("PAL", "Phosphatases alcalines", "UI/L", _SE),
        "bilirubine": ("BILT", "Bilirubine totale", "µmol/L", _SE),
        "cholesterol": ("CHOL", "Cholestérol total", "g/L", _SE),
        "hdl": ("HDL", "Cholestérol HDL", "g/L", _SE),
        "triglycerides": ("TG", "Triglycérides", "g/L", _SE),
        "glucose": ("GLY", "Glycémie à jeun", "mmol/L", _PL),
        "hba1c": ("HBA1C", "Hémoglobine glyquée", "%", _S),
        "proteines": ("PROT", "Protéines totales", "g/L", _SE),
        "albumine": ("ALB", "Albumine", "g/L", _SE),
        "ferritine": ("FERR", "Ferritine", "µg/L", _SE),
        "tca": ("TCA", "Temps de céphaline activée", "s", _CI),
        "tp": ("TP", "Taux de prothrombine", "%", _CI),
        "sars_cov2_pcr": ("COVPCR", "SARS-CoV-2 RT-PCR", "", _NP),
        "sars_cov2_ag": ("COVAG", "Test antigénique SARS-CoV-2", "", _NP),
        "hav_igm": ("HAVM", "Hépatite A IgM", "", _SE),
        "hbs_ag": ("AGHBS", "Antigène HBs", "", _SE),
        "measles_igm": ("ROUGM", "Rougeole IgM", "", _SE),
        "legionella_ag_urine": ("LEGU", "Antigénurie Légionelle", "", _U),
        "listeria_pcr": ("LISTP", "PCR Listeria monocytogenes", "", _S),
        "meningo_pcr": ("MENP", "PCR méningocoque", "", "LCR"),
        "dengue_igm": ("DENGM", "Dengue IgM", "", _SE),
        "chik_igm": ("CHIKM", "Chikungunya IgM", "", _SE),
        "tb_pcr": ("BKPCR", "PCR M. tuberculosis", "", "Expectoration"),
    },
    # Paris, old SGL (Latin-1): mass units for glucose, urea, creatinine, bilirubin; "giga/l".
    "labo_beta": {
        "hemoglobine": ("HGB", "Hemoglobine", "g/dl", _S),
        "leucocytes": ("LEUCO", "Leucocytes", "giga/l", _S),
        "erythrocytes": ("HEMAT", "Hématies", "tera/l", _S),
        "hematocrite": ("HTE", "Hématocrite", "%", _S),
        "vgm": ("VGM", "Volume globulaire moyen", "fl", _S),
        "tcmh": ("TCMH", "TCMH", "pg", _S),
        "ccmh": ("CCMH", "CCMH", "g/dl", _S),
        "plaquettes": ("PLAQ", "Numération plaquettaire", "giga/l", _S),
        "neutrophiles": ("NEUTRO", "Neutrophiles", "giga/l", _S),
        "lymphocytes": ("LYMPHO", "Lymphocytes", "giga/l", _S),
        "monocytes": ("MONO", "Monocytes", "giga/l", _S),
        "eosinophiles": ("EOSINO", "Eosinophiles", "giga/l", _S),
        "sodium": ("NA", "Natrémie", "mmol/l", _SE),
        "potassium": ("K", "Kaliémie", "mmol/l", _SE),
        "chlorure": ("CL", "Chlorémie", "mmol/l", _SE),
        "uree": ("URE", "Urée sanguine", "g/l", _SE),
        "creatinine": ("CREAT", "Créatininémie", "mg/l", _SE),
        "alat": ("TGP", "Transaminases ALAT", "UI/l", _SE),
        "asat": ("TGO", "Transaminases ASAT", "UI/l", _SE),
        "ggt": ("GGT", "Gamma glutamyl transférase", "UI/l", _SE),
        "pal": ("PAL", "Phosphatases alcalines", "UI/l", _SE),
        "bilirubine": ("BILI", "Bilirubine totale", "mg/l", _SE),
        "cholesterol": ("CHOL", "Cholestérol", "g/l", _SE),
        "hdl": ("HDL", "HDL cholestérol", "g/l", _SE),
        "triglycerides": ("TRIG", "Triglycérides", "g/l", _SE),
        "glucose": ("GLUC", "Glucose", "g/l", _PL),
        "hba1c": ("HBA1C", "HbA1c", "%", _S),
        "proteines": ("PROTT", "Protidémie", "g/l", _SE),
        "albumine": ("ALBU", "Albuminémie", "g/l", _SE),
        "ferritine": ("FERRI", "Ferritinémie", "ng/ml", _SE),
        "tca": ("TCK", "TCA (céphaline kaolin)", "sec", _CI),
        "tp": ("TQ", "Temps de Quick (TP)", "%", _CI),
        "sars_cov2_pcr": ("PCRCOV", "PCR SARS-CoV-2", "", _NP),
        "sars_cov2_ag": ("TAGCOV", "Antigène SARS-CoV-2", "", _NP),
        "hav_igm": ("VHAM", "Sérologie hépatite A IgM", "", _SE),
        "hbs_ag": ("HBSAG", "Ag HBs", "", _SE),
        "measles_igm": ("ROUG", "Rougeole IgM", "", _SE),
        "legionella_ag_urine": ("LEGIO", "Antigène Legionella urinaire", "", _U),
        "listeria_pcr": ("LISTE", "Listeria PCR", "", _S),
        "meningo_pcr": ("MENIN", "Méningocoque PCR", "", "LCR"),
        "dengue_igm": ("DENG", "Dengue IgM", "", _SE),
        "chik_igm": ("CHIK", "Chikungunya IgM", "", _SE),
        "tb_pcr": ("MTB", "BK PCR", "", "Expectoration"),
    },
    # Marseille, recent SGL writing UCUM; lipids in mmol/L and hematocrit in L/L.
    "labo_gamma": {
        "hemoglobine": ("HGB", "Hémoglobine (Hb)", "g/dL", _S),
        "leucocytes": ("WBC", "Globules blancs", "10*9/L", _S),
        "erythrocytes": ("RBC", "Globules rouges", "10*12/L", _S),
        "hematocrite": ("HCT", "Hématocrite", "L/L", _S),
        "vgm": ("MCV", "VGM", "fL", _S),
        "tcmh": ("MCH", "TCMH", "pg", _S),
        "ccmh": ("MCHC", "CCMH", "g/dL", _S),
        "plaquettes": ("PLT", "Plaquettes", "10*9/L", _S),
        "neutrophiles": ("NEUT", "Neutrophiles", "10*9/L", _S),
        "lymphocytes": ("LYM", "Lymphocytes", "10*9/L", _S),
        "monocytes": ("MON", "Monocytes", "10*9/L", _S),
        "eosinophiles": ("EOS", "Éosinophiles", "10*9/L", _S),
        "sodium": ("NA", "Sodium sérique", "mmol/L", _SE),
        "potassium": ("K", "Potassium sérique", "mmol/L", _SE),
        "chlorure": ("CL", "Chlorures", "mmol/L", _SE),
        "uree": ("UREA", "Urée", "mmol/L", _SE),
        "creatinine": ("CREAT", "Créatinine", "umol/L", _SE),
        "alat": ("ALT", "ALAT", "U/L", _SE),
        "asat": ("AST", "ASAT", "U/L", _SE),
        "ggt": ("GGT", "GGT", "U/L", _SE),
        "pal": ("ALP", "PAL", "U/L", _SE),
        "bilirubine": ("TBIL", "Bilirubine totale", "umol/L", _SE),
        "cholesterol": ("CHOL", "Cholestérol total", "mmol/L", _SE),
        "hdl": ("HDLC", "HDL-cholestérol", "mmol/L", _SE),
        "triglycerides": ("TRIG", "Triglycérides", "mmol/L", _SE),
        "glucose": ("GLU", "Glucose à jeun", "mmol/L", _PL),
        "hba1c": ("A1C", "HbA1c", "%", _S),
        "proteines": ("TPROT", "Protéines", "g/L", _SE),
        "albumine": ("ALB", "Albumine", "g/L", _SE),
        "ferritine": ("FERRIT", "Ferritine", "ug/L", _SE),
        "tca": ("APTT", "TCA patient", "s", _CI),
        "tp": ("PT", "TP", "%", _CI),
        "sars_cov2_pcr": ("SC2PCR", "SARS-CoV-2 PCR", "", _NP),
        "sars_cov2_ag": ("SC2AG", "SARS-CoV-2 Ag rapide", "", _NP),
        "hav_igm": ("HAVIGM", "VHA IgM", "", _SE),
        "hbs_ag": ("HBSAG", "AgHBs", "", _SE),
        "measles_igm": ("MEASM", "Rougeole IgM", "", _SE),
        "legionella_ag_urine": ("LEGAG", "Legionella Ag urinaire", "", _U),
        "listeria_pcr": ("LISPCR", "Listeria PCR", "", _S),
        "meningo_pcr": ("NMPCR", "N. meningitidis PCR", "", "LCR"),
        "dengue_igm": ("DENIGM", "Dengue IgM", "", _SE),
        "chik_igm": ("CHKIGM", "Chikungunya IgM", "", _SE),
        "tb_pcr": ("MTBPCR", "M. tuberculosis PCR", "", "Expectoration"),
    },
    # Bordeaux: numeric codes, upper-case labels, glucose in g/l; no MDO molecular tests.
    "labo_delta": {
        "hemoglobine": ("0101", "HEMOGLOBINE", "g/dl", _S),
        "leucocytes": ("0102", "LEUCOCYTES", "10^9/l", _S),
        "erythrocytes": ("0103", "HEMATIES", "10^12/l", _S),
        "hematocrite": ("0104", "HEMATOCRITE", "%", _S),
        "vgm": ("0105", "VGM", "fl", _S),
        "tcmh": ("0106", "TCMH", "pg", _S),
        "ccmh": ("0107", "CCMH", "g/dl", _S),
        "plaquettes": ("0108", "PLAQUETTES", "10^9/l", _S),
        "neutrophiles": ("0111", "POLYNUCLEAIRES NEUTROPHILES", "10^9/l", _S),
        "lymphocytes": ("0112", "LYMPHOCYTES", "10^9/l", _S),
        "monocytes": ("0113", "MONOCYTES", "10^9/l", _S),
        "eosinophiles": ("0114", "POLYNUCLEAIRES EOSINOPHILES", "10^9/l", _S),
        "sodium": ("0201", "SODIUM", "mmol/l", _SE),
        "potassium": ("0202", "POTASSIUM", "mmol/l", _SE),
        "chlorure": ("0203", "CHLORE", "mmol/l", _SE),
        "uree": ("0204", "UREE", "mmol/l", _SE),
        "creatinine": ("0205", "CREATININE", "µmol/l", _SE),
        "alat": ("0301", "ALAT", "UI/l", _SE),
        "asat": ("0302", "ASAT", "UI/l", _SE),
        "ggt": ("0303", "GAMMA GT", "UI/l", _SE),
        "pal": ("0304", "PHOSPHATASES ALCALINES", "UI/l", _SE),
        "bilirubine": ("0305", "BILIRUBINE TOTALE", "µmol/l", _SE),
        "cholesterol": ("0401", "CHOLESTEROL TOTAL", "g/l", _SE),
        "hdl": ("0402", "CHOLESTEROL HDL", "g/l", _SE),
        "triglycerides": ("0403", "TRIGLYCERIDES", "g/l", _SE),
        "glucose": ("0501", "GLYCEMIE", "g/l", _PL),
        "hba1c": ("0502", "HEMOGLOBINE GLYQUEE", "%", _S),
        "proteines": ("0601", "PROTEINES TOTALES", "g/l", _SE),
        "albumine": ("0602", "ALBUMINE", "g/l", _SE),
        "ferritine": ("0603", "FERRITINE", "µg/l", _SE),
        "tca": ("0701", "TCA", "sec", _CI),
        "tp": ("0702", "TP", "%", _CI),
        "sars_cov2_pcr": ("0901", "COVID-19 PCR", "", _NP),
        "sars_cov2_ag": ("0902", "COVID-19 TEST ANTIGENIQUE", "", _NP),
        "hav_igm": ("0801", "HEPATITE A IGM", "", _SE),
        "hbs_ag": ("0802", "ANTIGENE HBS", "", _SE),
        "measles_igm": ("0803", "ROUGEOLE IGM", "", _SE),
        "legionella_ag_urine": ("0804", "LEGIONELLE AG URINAIRE", "", _U),
        "dengue_igm": ("0805", "DENGUE IGM", "", _SE),
        "chik_igm": ("0806", "CHIKUNGUNYA IGM", "", _SE),
    },
    # Lille, Latin-1, compact dates: creatinine in mg/l, hemoglobin in g/L.
    "labo_epsilon": {
        "hemoglobine": ("HEMO", "Hémoglobine", "g/L", _S),
        "leucocytes": ("LEUC", "Leucocytes", "10^9/L", _S),
        "erythrocytes": ("ERYT", "Érythrocytes", "10^12/L", _S),
        "hematocrite": ("HTC", "Hématocrite", "%", _S),
        "vgm": ("VGM", "VGM", "fL", _S),
        "tcmh": ("TCMH", "TCMH", "pg", _S),
        "ccmh": ("CCMH", "CCMH", "g/dL", _S),
        "plaquettes": ("PLAQ", "Plaquettes", "10^9/L", _S),
        "neutrophiles": ("PN", "Poly. neutrophiles", "10^9/L", _S),
        "lymphocytes": ("LY", "Lymphocytes", "10^9/L", _S),
        "monocytes": ("MO", "Monocytes", "10^9/L", _S),
        "eosinophiles": ("EO", "Poly. éosinophiles", "10^9/L", _S),
        "sodium": ("NA+", "Na+", "mmol/L", _SE),
        "potassium": ("K+", "K+", "mmol/L", _SE),
        "chlorure": ("CL-", "Cl-", "mmol/L", _SE),
        "uree": ("UREE", "Urée", "mmol/L", _SE),
        "creatinine": ("CREA", "Créatinine", "mg/l", _SE),
        "alat": ("ALAT", "Alanine aminotransférase", "U/L", _SE),
        "asat": ("ASAT", "Aspartate aminotransférase", "U/L", _SE),
        "ggt": ("GGT", "Gamma-GT", "U/L", _SE),
        "pal": ("PAL", "Phosphatase alcaline", "U/L", _SE),
        "bilirubine": ("BILT", "Bilirubine T", "µmol/L", _SE),
        "cholesterol": ("CT", "Cholestérol total", "g/L", _SE),
        "hdl": ("HDL", "Cholestérol-HDL", "g/L", _SE),
        "triglycerides": ("TG", "Triglycérides", "g/L", _SE),
        "glucose": ("GLYC", "Glycémie", "mmol/L", _PL),
        "hba1c": ("HBGLY", "Hb glyquée A1c", "%", _S),
        "proteines": ("PROT", "Protéines", "g/L", _SE),
        "albumine": ("ALB", "Albumine sérique", "g/L", _SE),
        "ferritine": ("FER", "Ferritine", "µg/L", _SE),
        "tca": ("TCA", "Temps de céphaline + activateur", "s", _CI),
        "tp": ("TP", "Taux de prothrombine", "%", _CI),
        "sars_cov2_pcr": ("COV2R", "Coronavirus SARS-CoV-2 RT-PCR", "", _NP),
        "sars_cov2_ag": ("COV2A", "Coronavirus SARS-CoV-2 antigène", "", _NP),
        "hav_igm": ("HAM", "Anticorps anti-VHA IgM", "", _SE),
        "hbs_ag": ("AGHBS", "Antigène HBs", "", _SE),
        "measles_igm": ("ROUGM", "Anticorps anti-rougeole IgM", "", _SE),
        "legionella_ag_urine": ("LEGU", "Légionelle antigène urinaire", "", _U),
        "listeria_pcr": ("LISTP", "Listeria monocytogenes (PCR)", "", _S),
        "meningo_pcr": ("MENP", "Méningocoque (PCR)", "", "LCR"),
        "dengue_igm": ("DENM", "Anticorps anti-dengue IgM", "", _SE),
        "chik_igm": ("CHIKM", "Anticorps anti-chikungunya IgM", "", _SE),
        "tb_pcr": ("BKP", "Mycobactéries complexe tuberculosis (PCR)", "", "Expectoration"),
    },
}

# Closed (historical) mapping rows: the lab re-coded these tests; nothing dated after valid_to is
# generated with them, but the pipeline must pick the row valid at the result's date.
HISTORY: dict[str, list[tuple[str, str, str, str, str, str, str]]] = {
    # local_code, local_label, unit, specimen, loinc_num, valid_from, valid_to
    "labo_beta": [("GLUC", "Glucose", "g/l", _PL, "2339-0", "2015-01-01", "2023-12-31")],
    "labo_alpha": [("GLYC", "Glycémie", "g/L", _PL, "2339-0", "2012-03-01", "2019-12-31")],
}
VALID_FROM: dict[tuple[str, str], str] = {("labo_beta", "GLUC"): "2024-01-01"}


def _write(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    print(f"wrote {path.relative_to(SEEDS.parent)}: {len(rows)} rows")


def main() -> None:
    loinc = {r["loinc_num"] for r in csv.DictReader((SEEDS / "reference/loinc.csv").open(encoding="utf-8"))}
    missing = [c[1] for c in CATALOG if c[1] not in loinc]
    missing += [h[4] for rows in HISTORY.values() for h in rows if h[4] not in loinc]
    if missing:
        raise SystemExit(f"LOINC codes not in seeds/reference/loinc.csv: {missing}")
    _write(SEEDS / "tests_catalog.csv",
           ["test_key", "loinc_num", "label_fr", "kind", "canonical_unit", "mean", "sd", "decimals", "panel"],
           [list(c) for c in CATALOG])
    _write(SEEDS / "labs.csv", ["source", "finess", "name", "encoding", "date_style", "decimal"],
           [[s, body + luhn.calc_check_digit(body), n, e, d, dec] for s, body, n, e, d, dec in LABS])
    loinc_of = {c[0]: c[1] for c in CATALOG}
    for source, table in MAPPINGS.items():
        rows = [list(h) for h in HISTORY.get(source, [])]
        for key, (code, label, unit, specimen) in table.items():
            rows.append([code, label, unit, specimen, loinc_of[key], VALID_FROM.get((source, code), OPEN_FROM), ""])
        _write(SEEDS / "mappings" / f"{source}.csv",
               ["local_code", "local_label", "unit", "specimen", "loinc_num", "valid_from", "valid_to"], rows)


if __name__ == "__main__":
    main()
