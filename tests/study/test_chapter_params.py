"""Every chapter's ``Params``: its fields are its notebook's parameters cell, the cell's values pass in
both profiles, and a bad value gets a one-line ValueError when the parameters are created."""
import ast
import importlib
from dataclasses import fields

import nbformat
import pytest

from autobuild_lib.study.book import list_notebooks

NOTEBOOKS = list_notebooks()


def _cell_values(nb) -> dict:
    """The literal values of the notebook's parameters cell."""
    cell = next(c for c in nbformat.read(nb, 4).cells if c.cell_type == "code")
    return {t.id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body
            if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


def _params(nb):
    return importlib.import_module(f"autobuild_lib.study.chapter{nb.stem[:2]}").Params


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_params_fields_are_the_parameters_cell(nb):
    assert {f.name for f in fields(_params(nb)) if f.init} == set(_cell_values(nb)), nb.name


@pytest.mark.parametrize("profile", ["smoke", "full"])
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_the_cells_values_pass_in_both_profiles(nb, profile):
    p = _params(nb)(**{**_cell_values(nb), "profile": profile})
    assert p.smoke == (profile == "smoke")


def test_profiles_resolve_the_chapters_settings():
    from autobuild_lib.study import chapter02, chapter05

    nb02 = next(n for n in NOTEBOOKS if n.stem.startswith("02"))
    smoke = chapter02.Params(**{**_cell_values(nb02), "profile": "smoke"})
    full = chapter02.Params(**{**_cell_values(nb02), "profile": "full"})
    assert (smoke.epochs, smoke.n_archs) == (2, 100)
    assert (full.epochs, full.lr, full.batch_size, full.n_archs) == (200, 1e-4, 128, None)
    assert full.schedule == chapter02.PAPER
    nb05 = next(n for n in NOTEBOOKS if n.stem.startswith("05"))
    smoke5 = chapter05.Params(**{**_cell_values(nb05), "profile": "smoke"})
    assert smoke5.k == 2 and len(smoke5.eqs) == 2 and smoke5.n_eval == 1


BAD = [
    ("01", {"seed": -1}, "seed must be a non-negative int"),
    ("02", {"labels": []}, "labels must be a non-empty list"),
    ("02", {"lr": 1}, "lr must be a number in"),
    ("02", {"hop_bar": 2}, "hop_bar must be a number in"),
    ("03", {"hop": 5}, "hop must be an int in 0..4"),
    ("03", {"repeat": "yes"}, "repeat must be True or False"),
    ("04", {"equations": {"acc": "up"}}, "direction 'max' or 'min'"),
    ("04", {"table2_equation": "flops"}, "must be one of the equations"),
    ("05", {"equations": ["acc", "acc"]}, "distinct"),
    ("05", {"k": 0}, "k must be a positive int"),
    ("06", {"schemes": ["random"]}, "schemes must be distinct names"),
    ("06", {"space": "resnet"}, "space must be one of"),
    ("07", {"equations": ["acc"]}, "may use only PQ"),
    ("07", {"dataset": "imagenet"}, "dataset must be one of"),
    ("08", {"n_samples": 0}, r"n_samples must be an int in \[1, 16\]"),
    ("09", {"sd_dir": None}, "sd_dir must be a path string"),
    ("90", {"profile": "huge"}, "profile must be one of"),
]


@pytest.mark.parametrize("chapter, change, message", BAD, ids=[f"{c}-{next(iter(d))}" for c, d, _ in BAD])
def test_a_bad_parameter_is_named_in_one_line(chapter, change, message):
    nb = next(n for n in NOTEBOOKS if n.stem.startswith(chapter))
    with pytest.raises(ValueError, match=message) as err:
        _params(nb)(**{**_cell_values(nb), **change})
    assert "\n" not in str(err.value)


def test_params_are_frozen():
    nb = next(n for n in NOTEBOOKS if n.stem.startswith("01"))
    p = _params(nb)(**_cell_values(nb))
    with pytest.raises(AttributeError):
        p.seed = 3
