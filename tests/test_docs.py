"""The documentation's Python examples run, as written (see ``tests/_docblocks.py`` for the markers).

Blocks run on CPU in a temporary working directory, with small settings where the page is not the quick start
(that one is run by ``tests/test_quickstart.py``). ``pytest -rsx tests/test_docs.py`` lists the blocks that do
not run here and why.
"""

from __future__ import annotations

import pytest

from ._docblocks import ROOT, blocks, doc_pages, markers, quick_start, run

ALL = [b for page in doc_pages() for b in blocks(page)]
PAGES = sorted({b.page for b in ALL if b.marker is None})
MAX_SKIPS = 3  # blocks that cannot run here (data, another package, a GPU, long runs) stay few


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_documentation_has_examples():
    pages = {b.page for b in ALL}
    assert "README.md" in pages and len(pages) >= 8, pages
    assert len([b for b in ALL if b.marker is None]) >= 15


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, workdir):
    namespace = {"__name__": "__docs__"}
    for block in (b for b in ALL if b.page == page and b.marker is None):
        run(block, namespace)


@pytest.mark.parametrize("block", [b for b in ALL if b.marker == "skip"], ids=lambda b: b.id)
def test_skipped_example(block):
    pytest.skip(f"{block.id}: {block.reason}")


def test_markers_precede_python_blocks_and_give_reasons():
    for page in doc_pages():
        marked = {(b.marker, b.reason) for b in blocks(page) if b.marker}
        for line, name, text in markers(page):
            assert text, f"{page.name}:{line}: the {name} marker gives no reason"
            assert (name, text) in marked, f"{page.name}:{line}: the {name} marker is not before a python block"
    skips = [b.id for b in ALL if b.marker == "skip"]
    assert len(skips) <= MAX_SKIPS, f"too many skipped examples: {skips}"


def test_copies_of_the_quick_start_are_the_readme_s():
    qs = quick_start()
    assert qs.marker == "tested-by" and qs.reason == "tests/test_quickstart.py"
    copies = [b for b in ALL if b.marker == "tested-by"]
    assert len(copies) >= 2
    for b in copies:
        assert b.reason == "tests/test_quickstart.py" and (ROOT / b.reason).is_file(), b.id
        assert b.code == qs.code, f"{b.id} differs from the README's quick start"


def test_dev_installs_what_the_site_build_needs():
    import re
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "docs" in extras and set(extras["docs"]) <= set(extras["dev"])
    names = {re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0] for req in extras["docs"]}
    assert {"mkdocs", "mkdocs-material", "mkdocstrings"} <= names
    config = (ROOT / "mkdocs.yml").read_text()
    assert "font: false" in config, "the site must not load web fonts: CI builds it offline"


def test_readme_links_point_to_files_that_exist():
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t and not t.startswith("#")]
    assert any(t.startswith("docs/") for t in links)
    for target in links:
        assert (ROOT / target.split("#")[0]).exists(), f"README.md links to {target}, which does not exist"
    assert len(text) < 8000, f"the README has grown to {len(text)} characters: move details to docs/"
