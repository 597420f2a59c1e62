"""The repository explains itself: every `docs/ALGORITHM.md#anchor` the code cites exists, every
relative link in the README, the changelog and docs/ resolves (file and anchor), and the docs
name no machine paths."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ALGORITHM = REPO / "docs" / "ALGORITHM.md"
CODE_DIRS = ("ptolemy_rt", "export", "bench", "tests", "integrations")
DOCS = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md")),
        *sorted((REPO / "integrations").glob("*/README.md"))]

#: `docs/ALGORITHM.md#a` or `docs/ALGORITHM.md#a, #b, #c` (the citation form of the code)
CITATION = re.compile(r"docs/ALGORITHM\.md#([A-Za-z0-9_-]+)((?:,\s*#[A-Za-z0-9_-]+)*)")
EXPLICIT_ID = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def github_slug(heading: str, seen: dict[str, int]) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces → '-',
    repeated slugs numbered -1, -2, ..."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    slug = "".join(ch for ch in text.lower() if ch.isalnum() or ch in " -_").replace(" ", "-")
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    return slug if n == 0 else f"{slug}-{n}"


def strip_code(text: str) -> str:
    """Markdown without fenced code blocks and inline code spans (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors_of(md: Path) -> set[str]:
    """Explicit `<a id>` anchors and heading anchors of a markdown file."""
    text = md.read_text(encoding="utf-8")
    out = set(EXPLICIT_ID.findall(text))
    seen: dict[str, int] = {}
    for line in re.sub(r"^```.*?^```", "", text, flags=re.S | re.M).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            out.add(github_slug(m.group(1), seen))
    return out


def cited_anchors() -> list[tuple[str, int, str]]:
    """(file, line, anchor) of every ALGORITHM.md citation in the code, tests and scripts."""
    out = []
    for d in CODE_DIRS:
        for p in sorted((REPO / d).rglob("*")):
            if p.suffix not in (".py", ".sh") or not p.is_file() or p == Path(__file__).resolve():
                continue
            text = p.read_text(encoding="utf-8", errors="replace")
            for m in CITATION.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                names = [m.group(1)] + re.findall(r"#([A-Za-z0-9_-]+)", m.group(2))
                out += [(str(p.relative_to(REPO)), line, a) for a in names]
    return out


def test_algorithm_anchors_are_explicit_and_unique():
    ids = EXPLICIT_ID.findall(ALGORITHM.read_text(encoding="utf-8"))
    assert len(ids) >= 40, "docs/ALGORITHM.md lost its section anchors"
    dup = sorted({a for a in ids if ids.count(a) > 1})
    assert not dup, f"anchors defined twice in docs/ALGORITHM.md: {dup}"
    for a in ("lowmag-mixture", "published-box-rule", "batchnorm-regimes", "medmag-frame-shift",
              "lowmag-crop-sampling", "model-set-declarations"):
        assert a in ids


def test_every_cited_algorithm_anchor_exists():
    anchors = anchors_of(ALGORITHM)
    missing = [f"{f}:{ln}: #{a}" for f, ln, a in cited_anchors() if a not in anchors]
    assert not missing, "cited anchors missing from docs/ALGORITHM.md:\n" + "\n".join(missing)


def test_the_citation_pattern_finds_lists_of_anchors():
    m = CITATION.search("see docs/ALGORITHM.md#rotation, #lowmag-grid-angle, #medmag-rotation).")
    assert [m.group(1)] + re.findall(r"#([A-Za-z0-9_-]+)", m.group(2)) == [
        "rotation", "lowmag-grid-angle", "medmag-rotation"]
    slugs: dict[str, int] = {}
    assert github_slug("Kernels: the day `numba.pycc` goes", slugs) == "kernels-the-day-numbapycc-goes"
    assert github_slug("Model sets", slugs) == "model-sets"
    assert github_slug("Model sets", slugs) == "model-sets-1"


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(md: Path):
    bad = []
    for target in LINK.findall(strip_code(md.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors_of(dest):
            bad.append(f"{target}: no anchor #{anchor} in {dest.relative_to(REPO)}")
    assert not bad, f"{md.relative_to(REPO)}:\n" + "\n".join(bad)


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_docs_name_no_machine_paths(md: Path):
    text = md.read_text(encoding="utf-8")
    assert not re.search(r"(?<![\w.])/work/|/home/|/Users/|\b[A-Z]:\\[A-Za-z]", text), \
        f"{md.relative_to(REPO)} names a path of one machine"


def test_no_citation_of_a_file_outside_the_repository():
    """The algorithm is cited as docs/ALGORITHM.md anchors, not as sections of a specification
    file that a fresh clone does not have."""
    old = re.compile(r"SPEC(?:\.md)?\s+§")
    hits = []
    for d in CODE_DIRS:
        for p in sorted((REPO / d).rglob("*")):
            if p.suffix in (".py", ".sh") and p.is_file():
                text = p.read_text(encoding="utf-8", errors="replace")
                hits += [f"{p.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}"
                         for m in old.finditer(text)]
    for md in DOCS:
        text = md.read_text(encoding="utf-8")
        hits += [f"{md.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}" for m in old.finditer(text)]
    assert not hits, "citations of a file outside the repository:\n" + "\n".join(hits)


# ---------------------------------------------------------------------------------------
# one doctest per public function (docs/DEVELOPING.md "Rules"; run by `pytest --doctest-modules`)
# ---------------------------------------------------------------------------------------

RUNTIME = REPO / "ptolemy_rt"

#: Public functions that cannot have a meaningful doctest, each with the reason. Typer
#: command functions of cli.py (decorated ``@<app>.command``) are exempt by rule, see
#: `is_cli_command`: they are documented by ``--help`` and tested through the CLI.
NO_DOCTEST = {
    "cli.main": "console-script entry point: parses sys.argv and exits (tests/test_cli*.py)",
    "aot.build": "compiles every kernel with a C compiler (tens of seconds, writes an extension)",
    "aot.main": "`python -m ptolemy_rt.aot`: build() plus one line on stderr",
    "warmup.main": "`python -m ptolemy_rt.warmup`: compiles or loads every kernel (slow, no result)",
    "session_sim.main": "`python -m ptolemy_rt.session_sim`: runs whole simulated sessions (minutes); "
                        "its parts have doctests, tests/test_session_sim.py runs it",
}

#: Modules whose missing doctests are printed, not failed (none: every module is checked).
OWNED_ELSEWHERE: set[str] = set()


def is_cli_command(fn) -> bool:
    """A function decorated ``@something.command(...)`` or ``@something.callback(...)`` (typer)."""
    for d in fn.decorator_list:
        call = d.func if isinstance(d, ast.Call) else d
        if isinstance(call, ast.Attribute) and call.attr in ("command", "callback"):
            return True
    return False


def public_functions() -> list[tuple[str, bool]]:
    """("module.function", has a ``>>>`` example) for every public module-level function of the
    runtime (name without a leading underscore, defined in the module itself)."""
    out = []
    for p in sorted(RUNTIME.glob("*.py")):
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                if is_cli_command(node):
                    continue
                out.append((f"{p.stem}.{node.name}", ">>>" in (ast.get_docstring(node) or "")))
    return out


def test_every_public_function_has_a_doctest(capsys):
    funcs = public_functions()
    assert len(funcs) > 200, "the walk over ptolemy_rt/*.py found too few functions"
    names = {n for n, _ in funcs}
    stale = sorted(set(NO_DOCTEST) - names)
    assert not stale, f"NO_DOCTEST names functions that do not exist: {stale}"
    missing = [n for n, ok in funcs if not ok and n not in NO_DOCTEST]
    elsewhere = [n for n in missing if n.split(".")[0] in OWNED_ELSEWHERE]
    mine = [n for n in missing if n.split(".")[0] not in OWNED_ELSEWHERE]
    with capsys.disabled():
        if elsewhere:
            print(f"\n{len(elsewhere)} public functions without a doctest in modules owned elsewhere "
                  f"(OWNED_ELSEWHERE, temporary): " + ", ".join(elsewhere))
    assert not mine, (f"{len(mine)} public functions without a '>>>' example "
                      "(add one, or an entry with its reason in NO_DOCTEST):\n" + "\n".join(mine))


def test_the_doctest_walk_sees_decorators_and_docstrings():
    tree = ast.parse('@app.command("x")\ndef a():\n    """>>> 1\n    1"""\n\n@models_app.command\n'
                     'def b():\n    pass\n\ndef c():\n    """no example"""\n')
    a, b, c = tree.body
    assert is_cli_command(a) and is_cli_command(b) and not is_cli_command(c)
    assert ">>>" in ast.get_docstring(a) and ">>>" not in ast.get_docstring(c)
