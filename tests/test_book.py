"""The book's sources: py:percent/ipynb pairs in sync, no outputs, params valid, TOC complete."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("*.py"))


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_chapters():
    assert CHAPTERS


@pytest.mark.parametrize("name", CHAPTERS)
def test_pair_in_sync(name):
    py = jupytext.read(ROOT / "book" / f"{name}.py")
    ipynb_path = ROOT / "book" / f"{name}.ipynb"
    assert ipynb_path.exists(), f"{ipynb_path} missing: run `make sync`"
    nb = jupytext.read(ipynb_path)
    assert _cells(py) == _cells(nb), f"book/{name}.py and .ipynb differ: run `make sync`"


@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_has_no_outputs_and_a_parameters_cell(name):
    raw = json.loads((ROOT / "book" / f"{name}.ipynb").read_text())
    for c in raw["cells"]:
        if c["cell_type"] == "code":
            assert not c.get("outputs") and c.get("execution_count") is None, f"{name}.ipynb carries outputs"
    tagged = [c for c in raw["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1


@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_defaults_equal_quick_profile(name):
    """The parameters cell *is* the quick profile: the two must not drift apart."""
    raw = json.loads((ROOT / "book" / f"{name}.ipynb").read_text())
    cell = next(c for c in raw["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    ns: dict = {}
    exec("".join(cell["source"]), {}, ns)
    quick = yaml.safe_load((ROOT / "params" / name / "quick.yaml").read_text())
    for k, v in quick.items():
        assert ns[k] == v, f"params/{name}/quick.yaml {k}={v!r} but the notebook default is {ns[k]!r}"
    for profile in ("quick", "full", "paper"):
        assert (ROOT / "params" / name / f"{profile}.yaml").exists()


def test_every_chapter_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    for name in CHAPTERS:
        assert f"book/{name}" in toc


@pytest.mark.slow
def test_failing_chapter_is_reported_with_name_and_cell(tmp_path, monkeypatch):
    import nbformat

    from landmark_study import book, config

    (tmp_path / "book").mkdir()
    (tmp_path / "params" / "boom").mkdir(parents=True)
    (tmp_path / "params" / "boom" / "quick.yaml").write_text("steps: 1\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("steps = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("x = 1\nraise RuntimeError('deliberate failure at step %d' % steps)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "book" / "boom.ipynb")
    monkeypatch.setattr(book, "BOOK_DIR", tmp_path / "book")
    monkeypatch.setattr(book, "PARAMS_DIR", tmp_path / "params")
    monkeypatch.setattr(config, "load_chapter_params", lambda *a, **k: None)
    st = book.execute_chapter("boom", "quick", tmp_path / "out")
    assert not st.ok
    assert "chapter 'boom' (quick) failed" in st.message
    assert "raise RuntimeError" in st.message and "deliberate failure at step 1" in st.message


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_quick_key_is_set_by_the_other_profiles(name):
    """`papermill book/<ch>.ipynb out.ipynb -f params/<ch>/full.yaml` overrides only the keys the file
    names; a key only quick.yaml sets would keep its quick value in a full-profile run."""
    quick = yaml.safe_load((ROOT / "params" / name / "quick.yaml").read_text())
    for profile in ("full", "paper"):
        other = yaml.safe_load((ROOT / "params" / name / f"{profile}.yaml").read_text())
        missing = sorted(set(quick) - set(other))
        assert not missing, f"params/{name}/{profile}.yaml does not set {missing} (quick.yaml does)"


def test_execution_fills_every_parameters_cell_name_with_the_profile_or_default(tmp_path):
    import nbformat

    from landmark_study import book
    from landmark_study.config import load_chapter_params

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'quick'\nsteps = 10\nrounds = 2\n_private = 1",
                                          metadata={"tags": ["parameters"]})]
    nbformat.write(nb, tmp_path / "x.ipynb")
    assert book.parameter_names(tmp_path / "x.ipynb") == ["profile", "steps", "rounds", "_private"]
    p = load_chapter_params("self_training", {"profile": "full", "steps": 7})
    out = book.complete_parameters({"profile": "full", "steps": 7}, p, ["profile", "steps", "rounds", "nope"])
    assert out == {"profile": "full", "steps": 7, "rounds": p.rounds}  # default, not the cell's quick value
    assert book.complete_parameters({"a": 1}, None, ["b"]) == {"a": 1}
