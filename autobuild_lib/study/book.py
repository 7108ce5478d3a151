"""Execute the study's notebooks with papermill and render the Jupyter Book.

``python -m autobuild_lib book [--profile smoke|full]`` runs every notebook
of ``notebooks/`` in name order with the parameters of the top-level
``_config.yml`` (see :mod:`autobuild_lib.study.config`), writes the executed copies
to ``book/chapters/`` and then runs ``jupyter-book build book/``.

A chapter whose data is not there stops at its first cell with
:class:`~autobuild_lib.benchmarks.pipeline.missing.DataMissing` (the message names each missing file and
how to get it); the runner keeps that executed page, replaces papermill's error banner and the
traceback by a sentence that says what is missing, so the book still renders, and reports the
chapter as ``data missing``.  Any other error stops the build.

Every executed code cell gets myst-nb's ``hide-input`` tag: the rendered book shows narrative,
figures and tables, and the code only behind a "show code" toggle.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm

from autobuild_lib.paths import BOOK_DIR, NOTEBOOK_DIR, REPO_ROOT, STUDY_CONFIG
from autobuild_lib.study.claims import CLAIMS_ENV
from autobuild_lib.study.config import load_study_config, notebook_parameters

KERNEL = "autobuild"


def list_notebooks(directory: Path = NOTEBOOK_DIR, only: list[str] | None = None) -> list[Path]:
    """Notebooks in name order, optionally restricted to names/stems in ``only``."""
    books = sorted(directory.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {Path(o).stem for o in only}
        unknown = wanted - {b.stem for b in books}
        if unknown:
            raise ValueError(f"unknown notebooks {sorted(unknown)}; available: {[b.stem for b in books]}")
        books = [b for b in books if b.stem in wanted]
    return books


def execute_notebook(src: Path, dst: Path, config: Path = STUDY_CONFIG, progress: bool = True,
                     **overrides) -> tuple[dict, float]:
    """Execute one notebook into ``dst``; returns its parameters and wall seconds."""
    cfg = load_study_config(config)
    declared = set(pm.inspect_notebook(str(src)))
    params = notebook_parameters(cfg, src.stem, declared, **overrides)
    dst.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # the kernel inherits both: where claims go (see autobuild_lib.study.claims), and this checkout's
    # package first on its path, so a chapter runs the library it sits next to
    env = {CLAIMS_ENV: str(dst.parent / "claims"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name=KERNEL,
                            cwd=str(src.parent), progress_bar=progress)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return params, time.perf_counter() - start


HIDE = "hide-input"
_PAPERMILL_BANNER = "papermill-error-cell-tag"


def present(path: Path, missing: str | None = None) -> None:
    """Make an executed notebook readable as a book page: code behind a toggle (``hide-input``), no
    stderr (warnings, progress bars) and,
    when the chapter stopped on missing data, the reason in prose instead of papermill's banner
    and the traceback."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if _PAPERMILL_BANNER not in c.metadata.get("tags", [])]
    for c in cells:
        if c.cell_type != "code":
            continue
        tags = c.metadata.setdefault("tags", [])
        if HIDE not in tags:
            tags.append(HIDE)
        # library warnings and progress bars (stderr) are not for the reader
        c.outputs = [o for o in c.get("outputs", []) if o.get("name") != "stderr"
                     and (missing is None or o.get("output_type") != "error")]
    if missing is not None:
        at = next((i for i, c in enumerate(cells) if c.cell_type == "code"), 0)
        cells.insert(at, nbformat.v4.new_markdown_cell(
            f"**This chapter could not run here: its data is missing.** {missing}"))
    nb.cells = cells
    nbformat.write(nb, path)


def build_book(profile: str | None = None, only: list[str] | None = None, render: bool = True,
               out_dir: Path = BOOK_DIR / "chapters", config: Path = STUDY_CONFIG,
               notebook_dir: Path = NOTEBOOK_DIR) -> list[dict]:
    """Execute the notebooks into ``out_dir`` and render the book; returns a timing log."""
    log = []
    for nb in list_notebooks(notebook_dir, only=only):
        print(f"[book] executing {nb.name} (profile={profile or 'from _config.yml'})", flush=True)
        start = time.perf_counter()
        try:
            params, secs = execute_notebook(nb, out_dir / nb.name, config=config, profile=profile)
            status = "ok"
            present(out_dir / nb.name)
        except pm.PapermillExecutionError as err:
            if err.ename != "DataMissing":
                raise
            params, secs, status = {}, time.perf_counter() - start, "data missing"
            present(out_dir / nb.name, missing=err.evalue)
            print(f"[book] {nb.name}: DATA MISSING -- {err.evalue}", flush=True)
        log.append({"notebook": nb.name, "seconds": round(secs, 1), "status": status, **params})
        print(f"[book] {nb.name}: {status}, {secs:.1f} s", flush=True)
    if render:
        jb = Path(sys.executable).with_name("jupyter-book")
        exe = str(jb) if jb.exists() else shutil.which("jupyter-book")
        if exe is None:
            raise RuntimeError("jupyter-book not found; run scripts/setup.sh")
        subprocess.run([exe, "build", str(BOOK_DIR)], check=True)
        print(f"[book] rendered: {BOOK_DIR / '_build' / 'html' / 'index.html'}")
    return log
