"""The package's import directions, as ARCHITECTURE.md states them.

Every ``import`` of a ``speechbrain_ssv`` module, at the top of a file or
inside a function, is read from the source (no module is imported), and
each edge between two top-level parts of the package must point to a lower
layer. The known exceptions are listed with the reason they remain; the
test also fails when one of them is gone, so the list cannot go stale.
"""

import ast
import pathlib

import speechbrain_ssv

PACKAGE = pathlib.Path(speechbrain_ssv.__file__).parent

#: Layer of each top-level part (subpackage or module); an import may only
#: point to a strictly lower layer or stay inside its own part.
LAYERS = {
    "utils": 0,
    "data": 1,
    "losses": 1,
    "export_checks": 1,
    "augment": 2,
    "lobes": 2,
    "eval": 2,
    "minivox": 2,
    "clustering": 3,
    "inside": 3,
    "export": 3,
    "brains": 4,
    "recipe_utils": 5,
}

#: (importing module, imported module): why it is still there.
KNOWN_EXCEPTIONS = {}


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path):
    """Absolute names of the package modules ``path`` imports."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[
                    : len(package.split(".")) - node.level + 1
                ]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            # ``from speechbrain_ssv.losses import mixap`` imports a module.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {n for n in found if n and n.startswith("speechbrain_ssv.")}


def _part(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _edges():
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path)
        for target in _imports(path):
            if (PACKAGE / pathlib.Path(*target.split(".")[1:])).is_dir() or (
                PACKAGE / pathlib.Path(*target.split(".")[1:])
            ).with_suffix(".py").is_file():
                yield source, target


def test_every_part_has_a_layer():
    parts = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__")
        or (p.is_dir() and (p / "__init__.py").is_file())
    }
    assert parts == set(LAYERS), (
        "give each new part of the package a layer here and in ARCHITECTURE.md"
    )


def test_imports_point_to_lower_layers():
    wrong, used = [], set()
    for source, target in _edges():
        a, b = _part(source), _part(target)
        if a is None or b is None or a == b:
            continue
        if LAYERS[b] < LAYERS[a]:
            continue
        if (source, target) in KNOWN_EXCEPTIONS:
            used.add((source, target))
            continue
        wrong.append(
            f"{source} (layer {LAYERS[a]}) imports {target} (layer {LAYERS[b]})"
        )
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)
    stale = set(KNOWN_EXCEPTIONS) - used
    assert not stale, (
        f"no longer imported, remove from KNOWN_EXCEPTIONS: {stale}"
    )


def test_no_library_module_imports_the_recipe_glue_or_brains():
    offenders = sorted(
        f"{source} -> {target}"
        for source, target in _edges()
        if _part(target) in ("recipe_utils", "brains")
        and _part(source) not in ("recipe_utils", "brains")
        and (source, target) not in KNOWN_EXCEPTIONS
    )
    assert not offenders, offenders


def test_the_layers_match_architecture_md():
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for part, layer in LAYERS.items():
        assert f"| {layer} | `{part}` |" in text, (
            f"ARCHITECTURE.md's layer table has no row '| {layer} | `{part}` |'"
        )


def test_no_module_over_800_lines():
    """Small modules named for what they hold: one that passes 800 lines
    is split (ARCHITECTURE.md, "Size")."""
    sizes = {
        str(path.relative_to(PACKAGE)): len(
            path.read_text(encoding="utf-8").splitlines()
        )
        for path in PACKAGE.rglob("*.py")
    }
    long = {name: n for name, n in sizes.items() if n > 800}
    assert not long, f"split these modules (lines): {long}"
