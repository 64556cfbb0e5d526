"""nbgrader settings for the course; `python -m course_utils` and the Makefile use the same file."""

c = get_config()  # noqa: F821  (injected by traitlets)

c.CourseDirectory.course_id = "masked-prediction"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"

# A student who deletes a graded cell gets it back (and its tests) at autograde time.
c.OverwriteCells.add_missing_cells = True

# Importing torch alone takes ~7 s in a fresh kernel; training cells in the `ci` profile
# take well under a minute. A cell that runs past the limit is interrupted and fails,
# and grading goes on with the next cell.
c.ExecutePreprocessor.timeout = 600
c.ExecutePreprocessor.startup_timeout = 120
c.ExecutePreprocessor.interrupt_on_timeout = True
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
