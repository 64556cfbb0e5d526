"""The code catalogue: realistic codes (ICD-10-CM diagnoses, ATC medications, LOINC labs, CPT procedures),
each tagged with its kind and clinical group."""

from __future__ import annotations

from dataclasses import dataclass

from course_utils.masking import SPECIAL_TOKENS


@dataclass(frozen=True)
class ClinicalCode:
    """One code of the synthetic cohort, with what ``metadata/codes.parquet`` says about it."""

    code: str
    description: str
    kind: str  # diagnosis | medication | lab | procedure | demographic
    group: str  # the condition it belongs to (diabetes, hypertension, ...), "acute", "routine" or "demographic"
    unit: str | None = None

    @property
    def parent(self) -> str:
        """A coarser code in the same vocabulary: ICD-10 category, ATC level 4, or the lab's kind."""
        vocabulary, _, value = self.code.partition("//")
        if vocabulary == "ICD10CM":
            return f"ICD10CM//{value.split('.')[0]}"
        if vocabulary == "ATC":
            return f"ATC//{value[:5]}"
        return f"{vocabulary}//{self.group.upper()}"


CATALOGUE = (
    ClinicalCode("MEDS_BIRTH", "Birth", "demographic", "demographic"),
    ClinicalCode("GENDER//F", "Sex: female", "demographic", "demographic"),
    ClinicalCode("GENDER//M", "Sex: male", "demographic", "demographic"),
    ClinicalCode("ICD10CM//E66.9", "Obesity, unspecified", "diagnosis", "obesity"),
    ClinicalCode("LOINC//39156-5", "Body mass index", "lab", "obesity", "kg/m2"),
    ClinicalCode("ICD10CM//E11.9", "Type 2 diabetes mellitus without complications", "diagnosis", "diabetes"),
    ClinicalCode("ATC//A10BA02", "metformin", "medication", "diabetes"),
    ClinicalCode("ATC//A10BB09", "gliclazide", "medication", "diabetes"),
    ClinicalCode("ATC//A10AE04", "insulin glargine", "medication", "diabetes"),
    ClinicalCode("LOINC//4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "lab", "diabetes", "%"),
    ClinicalCode("LOINC//2345-7", "Glucose [Mass/volume] in Serum or Plasma", "lab", "diabetes", "mg/dL"),
    ClinicalCode("CPT//92250", "Fundus photography (diabetic retinal screening)", "procedure", "diabetes"),
    ClinicalCode("ICD10CM//I10", "Essential (primary) hypertension", "diagnosis", "hypertension"),
    ClinicalCode("ATC//C09AA02", "enalapril", "medication", "hypertension"),
    ClinicalCode("ATC//C08CA01", "amlodipine", "medication", "hypertension"),
    ClinicalCode("ATC//C03AA03", "hydrochlorothiazide", "medication", "hypertension"),
    ClinicalCode("LOINC//8480-6", "Systolic blood pressure", "lab", "hypertension", "mm[Hg]"),
    ClinicalCode("ICD10CM//E78.5", "Hyperlipidemia, unspecified", "diagnosis", "hyperlipidemia"),
    ClinicalCode("ATC//C10AA05", "atorvastatin", "medication", "hyperlipidemia"),
    ClinicalCode("LOINC//2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "lab", "hyperlipidemia", "mg/dL"),
    ClinicalCode("ICD10CM//N18.30", "Chronic kidney disease, stage 3 unspecified", "diagnosis", "kidney"),
    ClinicalCode("ATC//C09CA01", "losartan", "medication", "kidney"),
    ClinicalCode("ATC//B03XA01", "erythropoietin", "medication", "kidney"),
    ClinicalCode("LOINC//2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "lab", "kidney", "mg/dL"),
    ClinicalCode("ICD10CM//I50.9", "Heart failure, unspecified", "diagnosis", "heart_failure"),
    ClinicalCode("ATC//C03CA01", "furosemide", "medication", "heart_failure"),
    ClinicalCode("ATC//C07AB07", "bisoprolol", "medication", "heart_failure"),
    ClinicalCode("LOINC//33762-6", "NT-proBNP [Mass/volume] in Serum or Plasma", "lab", "heart_failure", "pg/mL"),
    ClinicalCode("CPT//93306", "Echocardiography, transthoracic", "procedure", "heart_failure"),
    ClinicalCode("ICD10CM//J45.909", "Unspecified asthma, uncomplicated", "diagnosis", "asthma"),
    ClinicalCode("ATC//R03AC02", "salbutamol", "medication", "asthma"),
    ClinicalCode("ATC//R03BA02", "budesonide", "medication", "asthma"),
    ClinicalCode("ICD10CM//F32.9", "Major depressive disorder, single episode, unspecified", "diagnosis", "depression"),
    ClinicalCode("ATC//N06AB06", "sertraline", "medication", "depression"),
    ClinicalCode("ICD10CM//J06.9", "Acute upper respiratory infection, unspecified", "diagnosis", "acute"),
    ClinicalCode("ICD10CM//J02.9", "Acute pharyngitis, unspecified", "diagnosis", "acute"),
    ClinicalCode("ICD10CM//N39.0", "Urinary tract infection, site not specified", "diagnosis", "acute"),
    ClinicalCode("ICD10CM//M54.50", "Low back pain, unspecified", "diagnosis", "acute"),
    ClinicalCode("ICD10CM//K21.9", "Gastro-esophageal reflux disease without esophagitis", "diagnosis", "acute"),
    ClinicalCode("ATC//N02BE01", "paracetamol", "medication", "acute"),
    ClinicalCode("ATC//J01CA04", "amoxicillin", "medication", "acute"),
    ClinicalCode("ATC//J01MA02", "ciprofloxacin", "medication", "acute"),
    ClinicalCode("ATC//M01AE01", "ibuprofen", "medication", "acute"),
    ClinicalCode("ATC//A02BC01", "omeprazole", "medication", "acute"),
    ClinicalCode("LOINC//718-7", "Hemoglobin [Mass/volume] in Blood", "lab", "routine", "g/dL"),
    ClinicalCode("LOINC//6690-2", "Leukocytes [#/volume] in Blood", "lab", "routine", "10*3/uL"),
)
CODES = {entry.code: entry for entry in CATALOGUE}


def code_group(token: str) -> str:
    """The clinical group of a token (``LOINC//4548-4//Q3`` -> ``diabetes``), ``special`` or ``other``."""
    if token in SPECIAL_TOKENS:
        return "special"
    code = token if token in CODES else token.rsplit("//", 1)[0]
    entry = CODES.get(code)
    return entry.group if entry else "other"
