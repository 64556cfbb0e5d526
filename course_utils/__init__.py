"""Masked prediction, the course: the tested backbone that every notebook imports.

One module per concept: ``device`` (devices, precision, run profiles), ``masking``
(BERT's masker and variants), ``text``, ``vision`` and ``ehr`` (data), ``models``
(the shared transformer, BERT, MAE, the EHR model), ``train`` (the training loop),
``viz`` (plots), ``checks`` (exercise feedback) and ``grading`` (sandboxed grading, the class autograder, nbgrader).
"""

__version__ = "0.1.0"
