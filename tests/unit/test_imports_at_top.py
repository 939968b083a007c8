"""Imports sit at the top of the package's modules (ARCHITECTURE.md).

An ``import`` inside a function hides a module's dependencies and can mask
an import cycle, so the test reads every module of ``speechbrain_ssv/``
(no module is imported) and fails on one, unless the import's line or the
line just above it says why it is there with a marker comment:

- ``# optional dependency: <which extra>`` for a package that the default
  install does not bring (faiss, coqui-tts, pyroomacoustics, ...);
- ``# lazy: <why>`` for a real reason to wait (a cycle, a measured start-up
  cost, an import that fails on some torch builds).
"""

import ast
import pathlib
import re

import speechbrain_ssv

PACKAGE = pathlib.Path(speechbrain_ssv.__file__).parent

#: A marker followed by its reason; a bare marker does not count.
MARKER = re.compile(r"#\s*(optional dependency|lazy):\s*\S")

#: Modules read by no one as a pattern to follow: ``inside/tiny.py`` builds
#: a tiny YourTTS for the tests, a documented demo whose coqui-tts imports
#: stay next to the code that shows how to use them.
EXEMPT = {"inside/tiny.py"}


def _function_imports(tree):
    """``Import``/``ImportFrom`` nodes anywhere inside a function or method
    of ``tree`` (nested functions included), each once."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    found[inner.lineno] = inner
    return [found[k] for k in sorted(found)]


def _unmarked_imports(path):
    """``(line number, source line)`` of the in-function imports of
    ``path`` that carry no marker on their line or the line above."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    unmarked = []
    for node in _function_imports(ast.parse(text)):
        here = lines[node.lineno - 1]
        above = lines[node.lineno - 2] if node.lineno > 1 else ""
        if not (MARKER.search(here) or MARKER.search(above)):
            unmarked.append((node.lineno, here.strip()))
    return unmarked


def test_marker_rule_reads_the_source():
    """The reader finds function imports and honours both marker places."""
    src = (
        "import os\n"
        "def f():\n"
        "    import json\n"
        "    # lazy: a cycle with g\n"
        "    import g\n"
        "    import faiss  # optional dependency: faiss extra\n"
        "    # lazy:\n"
        "    import h\n"
        "class C:\n"
        "    def m(self):\n"
        "        def inner():\n"
        "            from x import y\n"
    )
    tree = ast.parse(src)
    assert [n.lineno for n in _function_imports(tree)] == [3, 5, 6, 8, 12]
    lines = src.splitlines()
    unmarked = [
        n.lineno
        for n in _function_imports(tree)
        if not (
            MARKER.search(lines[n.lineno - 1])
            or MARKER.search(lines[n.lineno - 2])
        )
    ]
    # A bare "# lazy:" gives no reason, so line 8 stays unmarked.
    assert unmarked == [3, 8, 12]


def test_imports_at_the_top():
    """No unexplained import inside a function of ``speechbrain_ssv/``."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in EXEMPT:
            continue
        unmarked = _unmarked_imports(path)
        problems += [f"{rel}:{line}: {src}" for line, src in unmarked]
    assert not problems, (
        "imports inside functions; move them to the top of the module, or "
        "say why on the line above ('# optional dependency: ...' for an "
        "extra, '# lazy: ...' for a cycle or start-up cost):\n"
        + "\n".join(problems)
    )


def test_exempt_files_exist():
    """Each listed file is still in the package, so no entry outlives it."""
    for rel in EXEMPT:
        assert (PACKAGE / rel).is_file(), rel
