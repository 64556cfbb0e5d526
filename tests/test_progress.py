"""Progress bars in a notebook leave plain text, not widgets: what nbclient saves is what a reopened notebook shows."""

import nbformat
from nbclient import NotebookClient

LOOPS = """\
from course_utils.progress import tqdm
for budget in tqdm(range(3), desc="label budgets"):
    for model in range(4):
        for step in tqdm(range(5), desc="train", leave=False):
            pass
"""


def test_a_finished_loop_leaves_one_text_line_and_hidden_bars_share_one_empty_output():
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [nbformat.v4.new_code_cell(LOOPS), nbformat.v4.new_code_cell(LOOPS)]
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    for cell in notebook.cells:  # the second cell's bars never reuse, or overwrite, the first cell's outputs
        kept, hidden = cell.outputs
        assert kept.output_type == hidden.output_type == "display_data"
        assert set(kept.data) == {"text/plain"} and kept.data["text/plain"].startswith("label budgets: 100%|")
        assert "3/3" in kept.data["text/plain"] and "\n" not in kept.data["text/plain"]
        assert hidden.data == {}, "the twelve leave=False bars end as one empty output"
    assert not notebook.metadata.get("widgets"), "no widget state: there were no widgets"
