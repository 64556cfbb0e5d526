"""Masked prediction, the course: the tested backbone that every notebook imports.

One module per concept: ``device`` (devices, precision, run profiles), ``masking``
(BERT's masker and variants), ``contrastive`` (views and the NT-Xent loss), ``text``, ``vision``
and ``ehr`` (data), ``models`` (the shared transformer, every model and their FLOPs), ``train``
(the training loop), ``experiments`` (the labs' comparisons over seeds and budgets, on one shared
core), ``viz`` (plots), ``checks`` (exercise feedback) and ``grading`` (sandboxed grading, the class
autograder, nbgrader).
"""

__version__ = "0.1.0"
