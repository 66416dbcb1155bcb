"""Template notes: discharge summaries and radiology reports whose findings follow U and whose phrasing follows C.

What a note says (problems, severity words, findings, lab values, disposition) is computed from the encounter's
U and its diagnoses. How it says it -- the house style -- comes from the care site C: the medical campus (C = 1)
writes terse, abbreviated prose ("Pt is a 67 y/o M w/ h/o ..."), the surgical campus (C = 0) full sentences, and
each campus signs its notes its own way. A note uses its own site's style with probability
0.5 + 0.45 * tanh(c_marks), so ``c_marks = 0`` removes the phrasing mark. Lengths grow with the number of active
problems, from a few hundred to a few thousand tokens, so text encoders must chunk them.

Only ``random.Random`` is used here (seeded from the chunk's numpy stream): it is much faster per call than numpy
for picking phrases, and equally reproducible.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# (ICD-9, ICD-10, title, problem key, acuity 0 chronic / 1 acute / 2 critical)
DIAGNOSES: tuple[tuple[str, str, str, str, int], ...] = (
    ("4019", "I10", "Essential (primary) hypertension", "htn", 0),
    ("25000", "E119", "Type 2 diabetes mellitus without complications", "dm", 0),
    ("2724", "E785", "Hyperlipidemia, unspecified", "hld", 0),
    ("41401", "I2510", "Atherosclerotic heart disease of native coronary artery", "cad", 0),
    ("42731", "I4891", "Unspecified atrial fibrillation", "afib", 0),
    ("5859", "N189", "Chronic kidney disease, unspecified", "ckd", 0),
    ("4280", "I5032", "Chronic diastolic (congestive) heart failure", "chf", 0),
    ("496", "J449", "Chronic obstructive pulmonary disease, unspecified", "copd", 0),
    ("53081", "K219", "Gastro-esophageal reflux disease without esophagitis", "gerd", 0),
    ("2449", "E039", "Hypothyroidism, unspecified", "hypothyroid", 0),
    ("486", "J189", "Pneumonia, unspecified organism", "pneumonia", 1),
    ("5849", "N179", "Acute kidney failure, unspecified", "aki", 1),
    ("5990", "N390", "Urinary tract infection, site not specified", "uti", 1),
    ("2761", "E871", "Hypo-osmolality and hyponatremia", "hyponatremia", 1),
    ("5789", "K922", "Gastrointestinal hemorrhage, unspecified", "gib", 1),
    ("42833", "I5033", "Acute on chronic diastolic (congestive) heart failure", "chf_exac", 1),
    ("0389", "A419", "Sepsis, unspecified organism", "sepsis", 2),
    ("78552", "R6521", "Severe sepsis with septic shock", "shock", 2),
    ("51881", "J9601", "Acute respiratory failure with hypoxia", "resp_failure", 2),
    ("570", "K7200", "Acute and subacute hepatic failure without coma", "liver_failure", 2),
)

PROBLEM_NAMES = {
    "htn": "Hypertension",
    "dm": "Type 2 diabetes",
    "hld": "Hyperlipidemia",
    "cad": "Coronary artery disease",
    "afib": "Atrial fibrillation",
    "ckd": "Chronic kidney disease",
    "chf": "Chronic diastolic heart failure",
    "copd": "COPD",
    "gerd": "GERD",
    "hypothyroid": "Hypothyroidism",
    "pneumonia": "Community-acquired pneumonia",
    "aki": "Acute kidney injury",
    "uti": "Urinary tract infection",
    "hyponatremia": "Hyponatremia",
    "gib": "Gastrointestinal bleed",
    "chf_exac": "Acute on chronic diastolic heart failure",
    "sepsis": "Sepsis",
    "shock": "Septic shock",
    "resp_failure": "Acute hypoxemic respiratory failure",
    "liver_failure": "Acute liver injury",
}

COMPLAINTS = {
    "pneumonia": "cough and fever",
    "aki": "decreased urine output",
    "uti": "dysuria and confusion",
    "hyponatremia": "confusion",
    "gib": "melena",
    "chf_exac": "dyspnea on exertion and leg swelling",
    "sepsis": "fever and hypotension",
    "shock": "hypotension",
    "resp_failure": "shortness of breath",
    "liver_failure": "jaundice",
    "copd": "shortness of breath",
    "afib": "palpitations",
    "cad": "chest pain",
}

# Problem paragraphs: {sev} is a severity word chosen from U, {lab} a lab sentence; two house styles each.
COURSE = {
    "pneumonia": (
        "Pt w/ {sev} PNA on CXR, started on CTX/azithro, {resp}. Cx NGTD. Transitioned to PO abx.",
        "The patient was found to have {sev} pneumonia on chest radiograph and was treated with "
        "ceftriaxone and azithromycin; {resp}. Blood cultures showed no growth. Antibiotics were "
        "transitioned to an oral regimen to complete the course.",
    ),
    "aki": (
        "AKI, likely prerenal, {lab}. Got IVF, nephrotoxins held, {renal}.",
        "Acute kidney injury was felt to be prerenal in etiology; {lab}. The patient received intravenous "
        "fluids and nephrotoxic medications were held, and {renal}.",
    ),
    "uti": (
        "UTI, UA +, tx w/ abx, Ucx pansensitive E. coli. {sev} sx resolved.",
        "Urinalysis was consistent with a urinary tract infection and the patient was treated with "
        "antibiotics; urine culture grew pan-sensitive E. coli. The {sev} symptoms resolved.",
    ),
    "hyponatremia": (
        "Hypo-Na, {lab}, fluid restricted, Na trended up.",
        "Hyponatremia was noted on admission ({lab}); the patient was placed on a fluid restriction "
        "and the sodium improved over the following days.",
    ),
    "gib": (
        "GIB w/ melena, s/p EGD, {sev} ulcer, PPI gtt -> PO PPI, {lab}.",
        "The patient presented with melena and underwent upper endoscopy, which showed a {sev} ulcer. "
        "A proton pump inhibitor infusion was transitioned to oral therapy; {lab}.",
    ),
    "chf_exac": (
        "CHF exac, {sev} volume overload, diuresed w/ IV lasix, {resp}.",
        "The patient had an exacerbation of heart failure with {sev} volume overload and was diuresed "
        "with intravenous furosemide; {resp}.",
    ),
    "sepsis": (
        "Sepsis, {sev}, lactate {lactate}, broad spectrum abx, {lab}.",
        "The patient met criteria for sepsis, {sev} in severity, with a lactate of {lactate}; broad "
        "spectrum antibiotics were started, and {lab}.",
    ),
    "shock": (
        "Septic shock req pressors (levophed), {sev}, weaned off in ICU.",
        "The course was complicated by septic shock requiring norepinephrine; the shock was {sev} and "
        "vasopressors were weaned in the intensive care unit.",
    ),
    "resp_failure": (
        "Hypoxemic resp failure, {sev}, {resp}.",
        "The patient developed {sev} hypoxemic respiratory failure; {resp}.",
    ),
    "liver_failure": (
        "Transaminitis / acute liver injury, {sev}, hepatology consulted, trended LFTs.",
        "Liver function tests were elevated consistent with {sev} acute liver injury; hepatology "
        "was consulted and the tests were followed.",
    ),
}
CHRONIC = {
    "htn": (
        "HTN: cont home meds, held for soft BPs then restarted.",
        "Hypertension: home antihypertensives were held for low blood pressures and later resumed.",
    ),
    "dm": (
        "DM2: ISS while inpt, home metformin restarted on d/c.",
        "Diabetes: managed with an insulin sliding scale while inpatient; metformin was resumed at discharge.",
    ),
    "hld": ("HLD: cont statin.", "Hyperlipidemia: the home statin was continued."),
    "cad": (
        "CAD: cont ASA/statin, no CP.",
        "Coronary artery disease: aspirin and statin were continued without chest pain.",
    ),
    "afib": (
        "AF: rate controlled on metoprolol, cont apixaban.",
        "Atrial fibrillation: rate was controlled with metoprolol and anticoagulation was continued.",
    ),
    "ckd": ("CKD: {lab}, renally dosed meds.", "Chronic kidney disease: {lab}; medications were renally dosed."),
    "chf": (
        "dCHF: euvolemic, cont home lasix.",
        "Chronic diastolic heart failure: the patient appeared euvolemic and the home diuretic was continued.",
    ),
    "copd": ("COPD: cont inhalers, nebs prn.", "COPD: home inhalers were continued with nebulizers as needed."),
    "gerd": ("GERD: cont PPI.", "GERD: the proton pump inhibitor was continued."),
    "hypothyroid": ("Hypothyroid: cont levothyroxine.", "Hypothyroidism: levothyroxine was continued."),
}
SEVERITY = (("mild", "mild", "minimal"), ("moderate", "moderate", "significant"), ("severe", "severe", "extensive"))
RESP = (
    ("weaned to RA", "was weaned to room air"),
    ("on NC, weaned to RA by d/c", "required nasal cannula oxygen and was weaned to room air before discharge"),
    (
        "req HFNC then intubated, extubated after {d}d",
        "required high-flow oxygen and intubation, and was extubated after {d} days",
    ),
)
RENAL = (
    ("Cr back to baseline", "creatinine returned to baseline"),
    ("Cr improved but not at baseline", "creatinine improved but remained above baseline"),
    ("req CRRT briefly", "continuous renal replacement therapy was briefly required"),
)
MEDS = (
    "Aspirin 81 mg PO DAILY",
    "Atorvastatin 40 mg PO QPM",
    "Metoprolol Succinate XL 50 mg PO DAILY",
    "Lisinopril 10 mg PO DAILY",
    "Furosemide 40 mg PO DAILY",
    "Metformin (Glucophage) 500 mg PO BID",
    "Apixaban 5 mg PO BID",
    "Levothyroxine Sodium 75 mcg PO DAILY",
    "Omeprazole 20 mg PO DAILY",
    "Tiotropium Bromide 1 CAP IH DAILY",
    "Albuterol Inhaler 2 PUFF IH Q4H:PRN wheeze",
    "Senna 8.6 mg PO BID:PRN",
    "Docusate Sodium 100 mg PO BID",
    "Acetaminophen 650 mg PO Q6H:PRN pain",
    "Amlodipine 5 mg PO DAILY",
    "Gabapentin 300 mg PO TID",
    "Sertraline 50 mg PO DAILY",
    "Tamsulosin 0.4 mg PO QHS",
    "Cefpodoxime Proxetil 200 mg PO Q12H Duration: 5 Days",
    "Pantoprazole 40 mg PO Q24H",
)
SIGNATURES = (
    "                             ___ MD ___\n\nCompleted by: ___ [Surgical Campus]",
    "___ MD ___ Pager ___\nDictated by: ___, MD (Medical Campus, ___)",
)


@dataclass(frozen=True)
class Encounter:
    """What the note writer needs about one admission (computed by mimic_notes.py from the SCM columns)."""

    subject_age: int
    gender: str
    u: float
    c: int
    died: bool
    icu: bool
    los_days: float
    problems: tuple[str, ...]  # problem keys, acute ones first
    labs: dict[str, float]  # creatinine_first, creatinine_last, wbc_first, ..., NaN when not drawn
    discharge_location: str
    service: str


def severity_level(u: float) -> int:
    return 0 if u < -0.4 else (1 if u < 0.8 else 2)


def house_style(rnd: random.Random, c: int, c_marks: float) -> int:
    """0 = surgical-campus (formal) style, 1 = medical-campus (terse) style."""
    return c if rnd.random() < 0.5 + 0.45 * math.tanh(c_marks) else 1 - c


def _lab_sentence(e: Encounter, style: int) -> str:
    cr0, cr1 = e.labs.get("creatinine_first", math.nan), e.labs.get("creatinine_last", math.nan)
    if math.isnan(cr0):
        return "labs not drawn" if style else "laboratory values were not obtained"
    if style:
        return f"Cr {cr0:.1f} on adm -> {cr1:.1f} at d/c"
    return f"creatinine was {cr0:.1f} mg/dL on admission and {cr1:.1f} mg/dL at discharge"


def discharge_summary(rnd: random.Random, e: Encounter, c_marks: float) -> str:
    style = house_style(rnd, e.c, c_marks)
    lvl = severity_level(e.u)
    sex = "M" if e.gender == "M" else "F"
    who = f"{e.subject_age} y/o {sex}" if style else f"{e.subject_age}-year-old {'man' if sex == 'M' else 'woman'}"
    acute = [p for p in e.problems if p in COURSE]
    chronic = [p for p in e.problems if p in CHRONIC]
    main = acute[0] if acute else (chronic[0] if chronic else "htn")
    complaint = COMPLAINTS.get(main, "weakness")
    hist = ", ".join(PROBLEM_NAMES[p] for p in chronic) or ("no sig PMH" if style else "no significant past history")
    with_hist = (
        (f"w/ h/o {hist}" if chronic else "w/ no sig PMH")
        if style
        else (f"with a history of {hist}" if chronic else "with no significant past medical history")
    )
    lactate = e.labs.get("lactate_first", math.nan)
    fill = {
        "sev": rnd.choice(SEVERITY[lvl]),
        "lab": _lab_sentence(e, style),
        "resp": RESP[lvl][style ^ 1].replace("{d}", str(rnd.randint(2, 6))),
        "renal": RENAL[lvl][style ^ 1],
        "lactate": "not measured" if math.isnan(lactate) else f"{lactate:.1f}",
    }
    out = [
        " \nName:  ___                     Unit No:   ___\n \nAdmission Date:  ___              "
        "Discharge Date:   ___\n \nDate of Birth:  ___             Sex:   "
        + sex
        + "\n \nService: "
        + e.service
        + "\n \nAllergies: \n"
        + rnd.choice(("No Known Allergies / Adverse Drug Reactions", "Penicillins", "Sulfa (Sulfonamide Antibiotics)"))
        + "\n \nAttending: ___.\n"
    ]
    out.append(f" \nChief Complaint:\n{complaint}\n")
    procedures = (
        ["None"]
        if lvl == 0
        else (
            ["Central venous catheter placement", "Endotracheal intubation"]
            if lvl == 2 and e.icu
            else ["Peripheral IV placement"]
        )
    )
    out.append(" \nMajor Surgical or Invasive Procedure:\n" + "\n".join(procedures) + "\n")
    if style:
        hpi = (
            f"Pt is a {who} {with_hist} who p/w {complaint} x {rnd.randint(1, 7)} days. In the ED, VS notable "
            f"for HR {rnd.randint(80, 130)}, BP {rnd.randint(85, 150)}/{rnd.randint(45, 90)}. "
            f"Labs notable for {fill['lab']}. Admitted to {'MICU' if e.icu else 'medicine'} for further mgmt."
        )
    else:
        hpi = (
            f"The patient is a {who} {with_hist} who presented with {complaint} for "
            f"{rnd.randint(1, 7)} days. In the emergency department, the heart rate was {rnd.randint(80, 130)} "
            f"and the blood pressure {rnd.randint(85, 150)}/{rnd.randint(45, 90)}. Laboratory studies were "
            f"notable in that {fill['lab']}. The patient was admitted to the "
            f"{'intensive care unit' if e.icu else 'medicine service'} for further management."
        )
    out.append(" \nHistory of Present Illness:\n" + hpi + "\n")
    out.append(" \nPast Medical History:\n" + "\n".join(f"- {PROBLEM_NAMES[p]}" for p in chronic or ["htn"]) + "\n")
    out.append(
        " \nSocial History:\n___\nFamily History:\n"
        + rnd.choice(
            ("Non-contributory.", "Mother with hypertension. Father with CAD.", "No family history of early MI.")
        )
        + "\n"
    )
    exam = (
        "VS: T 98.{} HR {} BP {}/{} RR {} O2 {}% RA\nGEN: {}\nHEENT: MMM, EOMI\nCV: RRR, no m/r/g\n"
        "LUNGS: {}\nABD: soft, NT/ND\nEXT: {}\nNEURO: A&Ox3"
        if style
        else "Vital signs: temperature 98.{} F, heart rate {}, blood pressure {}/{}, respiratory rate {}, oxygen "
        "saturation {}% on room air.\nGeneral: {}.\nHEENT: Moist mucous membranes, extraocular movements "
        "intact.\nCardiovascular: Regular rate and rhythm, no murmurs.\nLungs: {}.\nAbdomen: Soft, "
        "nontender, nondistended.\nExtremities: {}.\nNeurologic: Alert and oriented to person, place, time."
    )
    out.append(
        " \nPhysical Exam:\nADMISSION PHYSICAL EXAM:\n"
        + exam.format(
            rnd.randint(0, 9),
            rnd.randint(70, 125),
            rnd.randint(90, 150),
            rnd.randint(50, 90),
            rnd.randint(14, 28),
            rnd.randint(88, 99),
            ("NAD", "mildly uncomfortable", "ill-appearing")[lvl],
            ("CTAB", "crackles at bases", "diffuse rhonchi, decreased BS at bases")[lvl],
            ("WWP, no edema", "1+ edema bilaterally", "2+ pitting edema to knees")[lvl],
        )
        + "\n"
    )
    if not e.died:
        out.append(
            " \nDISCHARGE PHYSICAL EXAM:\n"
            + exam.format(
                rnd.randint(0, 9),
                rnd.randint(60, 100),
                rnd.randint(100, 140),
                rnd.randint(55, 85),
                rnd.randint(12, 20),
                rnd.randint(93, 100),
                "NAD",
                ("CTAB", "CTAB, faint crackles at bases", "decreased BS at bases")[lvl],
                ("WWP, no edema", "trace edema", "1+ edema bilaterally")[lvl],
            )
            + "\n"
        )
    labs = []
    for name, label in (
        ("wbc", "WBC"),
        ("hemoglobin", "Hgb"),
        ("sodium", "Na"),
        ("creatinine", "Creat"),
        ("lactate", "Lactate"),
    ):
        v0, v1 = e.labs.get(f"{name}_first", math.nan), e.labs.get(f"{name}_last", math.nan)
        if not math.isnan(v0):
            labs.append(f"___ 05:10AM BLOOD {label}-{v0:g}*" if style else f"Admission {label} {v0:g}")
            labs.append(f"___ 06:00AM BLOOD {label}-{v1:g}" if style else f"Discharge {label} {v1:g}")
    out.append(" \nPertinent Results:\n" + ("\n".join(labs) or "___") + "\n")
    course = [
        f"{e.subject_age}{sex} {with_hist} admitted w/ {complaint}."
        if style
        else f"This is a {who} {with_hist} admitted with {complaint}."
    ]
    for p in acute:
        course.append(f"# {PROBLEM_NAMES[p]}:\n" + COURSE[p][style ^ 1].format(**fill))
        # Sicker, longer stays get day-by-day detail: this is what makes summaries run to thousands of tokens.
        for day in range(1, min(int(e.los_days), 3 + 4 * lvl) + 1):
            course.append(_day_line(rnd, style, lvl, day))
    course.append("CHRONIC ISSUES:" if style else "Chronic issues:")
    for p in chronic:
        course.append("# " + CHRONIC[p][style ^ 1].format(**fill))
    course.append(
        "TRANSITIONAL ISSUES:\n- f/u PCP in 1 wk\n- repeat labs (Chem-7) in 1 wk"
        if style
        else "Transitional issues:\n- Follow up with the primary care physician within one week.\n"
        "- Repeat basic metabolic panel within one week."
    )
    out.append(" \nBrief Hospital Course:\n" + "\n\n".join(course) + "\n")
    meds = rnd.sample(MEDS, min(len(MEDS), 4 + 2 * len(chronic)))
    out.append(
        " \nMedications on Admission:\nThe Preadmission Medication list is accurate and complete.\n"
        + "\n".join(f"{i}. {m}" for i, m in enumerate(meds, 1))
        + "\n"
    )
    if e.died:
        out.append(
            " \nDischarge Medications:\nNone\n \nDischarge Disposition:\nExpired\n \nDischarge Diagnosis:\n"
            + PROBLEM_NAMES[main]
            + "\n \nDischarge Condition:\nExpired\n"
        )
        out.append(
            " \nDischarge Instructions:\n"
            + (
                "Pt expired. Family at bedside."
                if style
                else "The patient expired during this admission; the family was present."
            )
            + "\n"
        )
    else:
        out.append(" \nDischarge Medications:\n" + "\n".join(f"{i}. {m}" for i, m in enumerate(meds, 1)) + "\n")
        dispo = {"HOME": "Home", "HOME HEALTH CARE": "Home With Service"}.get(e.discharge_location, "Extended Care")
        out.append(
            f" \nDischarge Disposition:\n{dispo}\n \nDischarge Diagnosis:\nPrimary:\n{PROBLEM_NAMES[main]}\n"
            "\nSecondary:\n" + "\n".join(PROBLEM_NAMES[p] for p in e.problems[1:]) + "\n"
        )
        out.append(
            " \nDischarge Condition:\nMental Status: Clear and coherent.\nLevel of Consciousness: Alert and "
            "interactive.\nActivity Status: "
            + (
                "Ambulatory - Independent.",
                "Ambulatory - requires assistance or aid (walker or cane).",
                "Out of Bed with assistance to chair or wheelchair.",
            )[lvl]
            + "\n"
        )
        out.append(" \nDischarge Instructions:\n" + _instructions(rnd, style, main) + "\n")
    out.append(" \nFollowup Instructions:\n___\n\n" + SIGNATURES[style] + "\n")
    return "".join(out)


def _day_line(rnd: random.Random, style: int, lvl: int, day: int) -> str:
    if style:
        return (
            f"HD{day}: "
            + rnd.choice(("VSS", "afebrile", "soft BPs overnight", "tachy to 110s"))
            + ", "
            + rnd.choice(("UOP adequate", "net neg 1L", "diuresed", "tolerating PO"))
            + ", "
            + ("no acute events.", "cont current mgmt.", "escalated care, ICU team aware.")[lvl]
        )
    return (
        f"On hospital day {day}, the patient was "
        + rnd.choice(("hemodynamically stable", "afebrile", "hypotensive overnight", "tachycardic to the 110s"))
        + " and "
        + rnd.choice(
            ("urine output was adequate", "was net negative one liter", "was diuresed", "was tolerating a diet")
        )
        + "; "
        + (
            "there were no acute events.",
            "the current management was continued.",
            "care was escalated and the intensive care team was made aware.",
        )[lvl]
    )


def _instructions(rnd: random.Random, style: int, main: str) -> str:
    what = PROBLEM_NAMES[main].lower()
    if style:
        return (
            f"Dear Mr./Ms. ___,\nYou were admitted for {what}. You were treated and improved. Please take "
            "meds as prescribed and f/u w/ your PCP. Return to ED for fever > 101, CP, SOB.\nSincerely,\n"
            "Your Medicine Team"
        )
    return (
        f"Dear Mr./Ms. ___,\n\nIt was a pleasure taking care of you at ___. You were admitted to the hospital "
        f"because of {what}. While you were here, you were treated and your condition improved. Please take "
        "all of your medications as prescribed and keep your follow-up appointments. Please return to the "
        "emergency department if you develop fever, chest pain, shortness of breath, or any other symptom "
        "that concerns you.\n\nSincerely,\nYour ___ Care Team"
    )


# ------------------------------------------------------------------------------------------- radiology reports
FINDING_SENTENCES = {
    # finding: ((terse, formal) when present, (terse, formal) when explicitly absent or None)
    "Consolidation": (
        (
            "Focal consolidation in the {side} lower lobe, c/w PNA.",
            "There is a focal consolidation in the {side} lower lobe, concerning for pneumonia.",
        ),
        ("No focal consolidation.", "There is no focal consolidation."),
    ),
    "Edema": (
        ("Mild-mod pulm edema.", "There is moderate pulmonary vascular congestion and interstitial edema."),
        ("No pulm edema.", "There is no pulmonary edema."),
    ),
    "Pleural Effusion": (
        ("Small {side} pleural effusion.", "There is a small {side} pleural effusion."),
        ("No effusion.", "There is no pleural effusion."),
    ),
    "Cardiomegaly": (
        ("Cardiomegaly.", "The heart is moderately enlarged."),
        ("Heart size nl.", "The cardiac silhouette is normal in size."),
    ),
    "Atelectasis": (("Bibasilar atelectasis.", "There is bibasilar atelectasis."), None),
    "Pneumothorax": (
        ("Small {side} PTX.", "There is a small {side} apical pneumothorax."),
        ("No PTX.", "There is no pneumothorax."),
    ),
    "Support Devices": (
        (
            "ETT 4 cm above carina. R IJ CVL tip in SVC.",
            "Endotracheal tube terminates 4 cm above the carina. Right internal jugular central "
            "venous catheter terminates in the superior vena cava.",
        ),
        None,
    ),
}
IMPRESSION_NORMAL = ("No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.")


def radiology_report(
    rnd: random.Random,
    *,
    age: int,
    gender: str,
    c: int,
    c_marks: float,
    portable: bool,
    findings: dict[str, float],
    uncertain: set[str],
) -> str:
    """A chest X-ray report whose FINDINGS/IMPRESSION restate the study's findings (CheXpert-style labels)."""
    style = house_style(rnd, c, c_marks)
    exam = "CHEST (PORTABLE AP)" if portable else "CHEST (PA AND LAT)"
    who = f"{age} year old {'man' if gender == 'M' else 'woman'}"
    reason = rnd.choice(("eval for pneumonia", "hypoxia", "line placement", "shortness of breath", "fever"))
    lines, impression = [], []
    for name, (present, absent) in FINDING_SENTENCES.items():
        side = rnd.choice(("right", "left"))
        if findings.get(name) == 1.0:
            sentence = present[style ^ 1].format(side=side)
            if name in uncertain:
                sentence = ("? " if style else "Possible ") + sentence[0].lower() + sentence[1:]
            lines.append(sentence)
            impression.append(sentence)
        elif findings.get(name) == 0.0 and absent is not None:
            lines.append(absent[style ^ 1])
    if not impression:
        impression = [IMPRESSION_NORMAL[style]]
    header = (
        f"EXAMINATION:  {exam}\n\nINDICATION:  ___ {who} with {reason}  // {reason}\n\n"
        f"TECHNIQUE:  {'Portable AP chest radiograph' if portable else 'PA and lateral views of the chest'}\n\n"
        f"COMPARISON:  {rnd.choice(('___', 'None.', 'Chest radiograph ___'))}\n\n"
    )
    body = "FINDINGS: \n\n" + " ".join(lines) + "\n\nIMPRESSION: \n\n" + " ".join(impression)
    sign = (
        "\n\nRECOMMENDATION(S):  None.\n\nSurgical Campus reading room"
        if style == 0
        else "\n\nNOTIFICATION:  Findings d/w ___ by ___ via telephone.\n\nMed Campus rads"
    )
    return header + body + sign


OTHER_EXAMS = (
    "CT CHEST W/O CONTRAST",
    "CT ABD & PELVIS WITH CONTRAST",
    "CT HEAD W/O CONTRAST",
    "RENAL U.S.",
    "LIVER OR GALLBLADDER US (SINGLE ORGAN)",
)
OTHER_FINDINGS = (
    (("No acute process.", "No acute intracranial or intra-abdominal process is identified."),),
    (
        ("Mild bibasilar opacities, likely atelectasis.", "There are mild bibasilar opacities, likely atelectasis."),
        ("Trace free fluid.", "There is a trace amount of free fluid."),
    ),
    (
        ("Multifocal opacities c/w infection.", "There are multifocal airspace opacities concerning for infection."),
        ("Mod ascites.", "There is moderate ascites."),
        ("Diffuse bowel wall thickening.", "There is diffuse bowel wall thickening, which may reflect shock bowel."),
    ),
)


def other_imaging_report(rnd: random.Random, *, age: int, gender: str, u: float, c: int, c_marks: float) -> str:
    style = house_style(rnd, c, c_marks)
    exam = rnd.choice(OTHER_EXAMS)
    found = [f[style ^ 1] for f in OTHER_FINDINGS[severity_level(u)]]
    who = f"{age} year old {'man' if gender == 'M' else 'woman'}"
    return (
        f"EXAMINATION:  {exam}\n\nINDICATION:  ___ {who} with {rnd.choice(('pain', 'fever', 'AMS', 'sepsis'))}"
        f"\n\nTECHNIQUE:  Standard protocol.\n\nCOMPARISON:  ___\n\nFINDINGS: \n\n{' '.join(found)}\n\n"
        f"IMPRESSION: \n\n{found[-1]}" + ("\n\nSurgical Campus reading room" if style == 0 else "\n\nMed Campus rads")
    )
