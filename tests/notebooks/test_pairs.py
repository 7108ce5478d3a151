"""Every notebook has its MyST markdown source (jupytext pair), and the two hold the same cells;
the notebooks narrate (short code cells, no parameter checks)."""
import jupytext
import nbformat
import pytest

from autobuild_lib.paths import NOTEBOOK_DIR

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def _cells(nb) -> list[tuple[str, str, tuple]]:
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_and_markdown_pair_are_in_sync(nb):
    md = nb.with_suffix(".md")
    assert md.is_file(), f"{md.name} missing: run `jupytext --sync {nb}`"
    assert _cells(nbformat.read(nb, 4)) == _cells(jupytext.read(md)), \
        f"{nb.name} and {md.name} differ: run `jupytext --sync {nb}`"


def test_code_cells_are_short_and_raise_nothing():
    lengths = []
    for nb in NOTEBOOKS:
        for i, c in enumerate(nbformat.read(nb, 4).cells):
            if c.cell_type == "code":
                lengths.append(len(c.source.splitlines()))
                assert lengths[-1] <= 25, f"{nb.name} cell {i}: {lengths[-1]} lines"
                assert "raise" not in c.source, f"{nb.name} cell {i} raises: checks belong in autobuild_lib.study"
    assert sum(lengths) / len(lengths) <= 12


def test_the_sync_check_sees_a_difference(tmp_path):
    nb = nbformat.read(NOTEBOOKS[0], 4)
    md = jupytext.reads(jupytext.writes(nb, fmt="md:myst"), fmt="md:myst")
    md.cells[-1].source += "\nprint('edited')"
    assert _cells(nb) != _cells(md)
