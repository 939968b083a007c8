"""SpeechBrain's recipe consistency rules, applied to this repository.

SpeechBrain checks every recipe it ships with two rules (its
``tests/consistency``): each top-level key of a recipe yaml is used by the
recipe (or by another key of the same yaml through ``!ref``), and every
function, method and class has a docstring. Its checker is not part of the
pip package, so the rules are written again here.

The yaml-key rule reads a key as used when it appears in the recipe script
or in the modules of the Brain the script instantiates, that Brain's base
classes included (``speechbrain_ssv/brains/<x>.py`` and ``brains/base.py``):
that code is the recipe's ``Brain`` subclass, which SpeechBrain recipes keep
inside ``train.py``. Helpers shared by the recipes
(``speechbrain_ssv/recipe_utils.py``) do not count: the script reads the
keys and passes them on.

The script/yaml pairs come from ``tests/recipes/*.csv`` (SpeechBrain's
recipe-list format), the single list of the recipes.
"""

import ast
import csv
import glob
import importlib
import inspect
import os
import re

import pytest
import speechbrain as sb
from speechbrain.utils.run_opts import RunOptions

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE_CSVS = sorted(glob.glob(os.path.join(REPO, "tests", "recipes", "*.csv")))
CSV_COLUMNS = [
    "Task",
    "Dataset",
    "Script_file",
    "Hparam_file",
    "Data_prep_file",
    "Readme_file",
    "Result_url",
    "HF_repo",
    "test_debug_flags",
    "test_debug_checks",
    "performance",
]
# Keys SpeechBrain reads itself (run options set from the yaml), as upstream.
EXEMPT_KEYS = set(RunOptions().as_dict()) | {"rescoring_lm_scale"}


def read_recipe_rows():
    """The rows of every recipe CSV, as dicts with a ``csv`` entry added.

    Returns
    -------
    list
        One dict per recipe yaml.

    Example
    -------
    >>> rows = read_recipe_rows()
    >>> all(row["Hparam_file"].endswith(".yaml") for row in rows)
    True
    """
    rows = []
    for path in RECIPE_CSVS:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f, skipinitialspace=True):
                row["csv"] = os.path.basename(path)
                rows.append(row)
    return rows


def yaml_keys_to_check(text):
    """The top-level keys of a yaml that the recipe must use: every key but
    those whose value is a call (``!apply:``, run for its effect, such as
    seeding) or a ``!!`` tag, and those another key refers to by
    ``!ref <key>`` (``<key[item]>`` and ``<key.attr>`` included).

    Arguments
    ---------
    text : str
        The yaml file's text.

    Returns
    -------
    list
        The keys, in file order.

    Example
    -------
    >>> text = (
    ...     "seed: 3\\n"
    ...     "out: !ref results/<seed>\\n"
    ...     "__set_seed: !apply:torch.manual_seed [!ref <seed>]\\n"
    ...     "modules:\\n"
    ...     "    model: !ref <model>\\n"
    ...     "model: !new:torch.nn.Linear [2, 2]\\n"
    ... )
    >>> yaml_keys_to_check(text)
    ['out', 'modules']
    """
    keys, referenced = [], set()
    for line in text.splitlines():
        for ref in re.findall(r"<([A-Za-z_]\w*)", line):
            referenced.add(ref)
        match = re.match(r"([A-Za-z_]\w*)\s*:(.*)", line)
        if match and "!!" not in line and "!apply" not in match.group(2):
            keys.append(match.group(1))
    return [k for k in keys if k not in referenced]


def key_patterns(key):
    """The forms in which Python code reads a hparams key, as upstream's
    checker recognises them: ``hparams["key"]``, ``hparams.key`` (also
    ``self.hparams.key``), ``modules.key``, ``getattr(self.hparams, "key"``
    and ``hparams.get("key"``. Unlike upstream, a key must end where the
    name ends (``hparams.lr_decay`` does not use ``lr``).

    Arguments
    ---------
    key : str
        The yaml key.

    Returns
    -------
    re.Pattern
        Matches any of the forms.

    Example
    -------
    >>> key_patterns("lr").search('opt(hparams["lr"])') is not None
    True
    >>> key_patterns("lr").search("self.hparams.lr_decay") is None
    True
    """
    k = re.escape(key)
    q = "[\"']"
    forms = [
        rf"\[\s*{q}{k}{q}\s*\]",
        rf"\bhparams\.{k}\b",
        rf"\bmodules\.{k}\b",
        rf"attr\(\s*(self\.)?hparams\s*,\s*{q}{k}{q}",
        rf"hparams\.get\(\s*{q}{k}{q}",
    ]
    return re.compile("|".join(forms))


def brain_modules(script):
    """The source files of the Brains a recipe script instantiates and of
    their base classes, within ``speechbrain_ssv``.

    Arguments
    ---------
    script : str
        Path of the recipe script.

    Returns
    -------
    list
        Paths of the modules, sorted.

    Example
    -------
    >>> files = brain_modules(os.path.join(
    ...     REPO, "recipes", "VoxCeleb", "SDPN", "train.py"))
    >>> sorted(os.path.basename(f) for f in files)
    ['base.py', 'sdpn.py']
    """
    with open(script, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "speechbrain_ssv.brains"
        ):
            for alias in node.names:
                imported[alias.asname or alias.name] = (node.module, alias.name)
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    files = set()
    for name in called & set(imported):
        module, attr = imported[name]
        obj = getattr(importlib.import_module(module), attr)
        if inspect.isclass(obj) and issubclass(obj, sb.Brain):
            for cls in inspect.getmro(obj):
                if cls.__module__.startswith("speechbrain_ssv."):
                    files.add(inspect.getsourcefile(cls))
    return sorted(files)


def unused_keys(hparam_file, script_file):
    """The keys of ``hparam_file`` that neither the script nor its Brain
    modules read, nor another key refers to.

    Arguments
    ---------
    hparam_file, script_file : str
        Paths, relative to the repository root.

    Returns
    -------
    tuple
        ``(keys, files)``: the unused keys and the files searched.

    Example
    -------
    >>> unused_keys("recipes/VoxCeleb/SDPN/hparams/sdpn_minivox.yaml",
    ...             "recipes/VoxCeleb/SDPN/train.py")[0]
    []
    """
    with open(os.path.join(REPO, hparam_file), encoding="utf-8") as f:
        keys = yaml_keys_to_check(f.read())
    script = os.path.join(REPO, script_file)
    files = [script] + brain_modules(script)
    code = ""
    for path in files:
        with open(path, encoding="utf-8") as f:
            code += f.read() + "\n"
    unused = [
        key
        for key in keys
        if key not in EXEMPT_KEYS and not key_patterns(key).search(code)
    ]
    return unused, [os.path.relpath(p, REPO) for p in files]


def missing_docstrings(path):
    """The functions, methods and classes of a Python file that have no
    docstring, nested functions included, as upstream's check: a module
    needs one too; a function whose name starts with ``_`` (``__init__``,
    private helpers) is exempt, a class is not.

    Arguments
    ---------
    path : str
        The Python file.

    Returns
    -------
    list
        ``"name (line N)"`` entries; ``"<module>"`` for the module's own.

    Example
    -------
    >>> import tempfile
    >>> src = (
    ...     "'''Mod.'''\\n"
    ...     "def outer():\\n"
    ...     "    '''Doc.'''\\n"
    ...     "    def inner():\\n"
    ...     "        return 1\\n"
    ...     "    def _private():\\n"
    ...     "        return 2\\n"
    ...     "    return inner\\n"
    ... )
    >>> with tempfile.NamedTemporaryFile("w", suffix=".py") as f:
    ...     _ = f.write(src)
    ...     f.flush()
    ...     missing_docstrings(f.name)
    ['inner (line 4)']
    """
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    missing = [] if ast.get_docstring(tree) is not None else ["<module>"]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name.startswith("_"):
                continue
        elif not isinstance(node, ast.ClassDef):
            continue
        if ast.get_docstring(node) is None:
            missing.append(f"{node.name} (line {node.lineno})")
    return missing


ROWS = read_recipe_rows()
PY_FILES = sorted(
    os.path.relpath(p, REPO)
    for pattern in ("recipes/**/*.py", "speechbrain_ssv/**/*.py")
    for p in glob.glob(os.path.join(REPO, pattern), recursive=True)
    # upstream skips __init__.py and the like
    if "__" not in os.path.relpath(p, REPO)
)


def test_csv_lists_every_recipe_yaml():
    """Every recipe yaml has one row, and each row's files exist."""
    yamls = sorted(
        os.path.relpath(p, REPO)
        for p in glob.glob(
            os.path.join(REPO, "recipes", "*", "*", "hparams", "*.yaml")
        )
    )
    listed = [row["Hparam_file"] for row in ROWS]
    assert sorted(listed) == yamls, "recipe yamls vs tests/recipes/*.csv"
    for row in ROWS:
        for col in (
            "Script_file",
            "Hparam_file",
            "Data_prep_file",
            "Readme_file",
        ):
            if row[col]:
                assert os.path.isfile(os.path.join(REPO, row[col])), (
                    f"{row['csv']}: {col} {row[col]} does not exist"
                )


@pytest.mark.parametrize("path", RECIPE_CSVS, ids=os.path.basename)
def test_csv_format(path):
    """SpeechBrain's columns; results link to a README section that exists;
    debug flags given for every row, as upstream requires."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        rows = list(reader)
    assert reader.fieldnames == CSV_COLUMNS
    assert rows
    for row in rows:
        assert row["Dataset"] == os.path.splitext(os.path.basename(path))[0]
        assert row["test_debug_flags"].strip(), row["Hparam_file"]
        readme, _, anchor = row["Result_url"].partition("#")
        readme = os.path.normpath(os.path.join(os.path.dirname(path), readme))
        assert readme == os.path.join(REPO, row["Readme_file"])
        with open(readme, encoding="utf-8") as f:
            headings = [
                re.sub(
                    r"[^\w\- ]", "", line.lstrip("#").strip().lower()
                ).replace(" ", "-")
                for line in f
                if line.startswith("#")
            ]
        assert anchor in headings, f"{row['Result_url']}: no such heading"


@pytest.mark.parametrize(
    "hparam_file,script_file",
    [(row["Hparam_file"], row["Script_file"]) for row in ROWS],
    ids=[os.path.relpath(row["Hparam_file"], "recipes") for row in ROWS],
)
def test_yaml_keys_used(hparam_file, script_file):
    """Every top-level key of a recipe yaml is read by its script or Brain."""
    unused, files = unused_keys(hparam_file, script_file)
    assert not unused, (
        f"{hparam_file}: keys {unused} are used neither by another key "
        f"(!ref) nor in {', '.join(files)}"
    )


@pytest.mark.parametrize("path", PY_FILES)
def test_docstrings(path):
    """Every function, method and class has a docstring."""
    missing = missing_docstrings(os.path.join(REPO, path))
    assert not missing, f"{path}: no docstring for {', '.join(missing)}"


def package_extras():
    """The package's optional dependencies, by extra, from ``setup.cfg``.

    Returns
    -------
    dict
        ``{extra: [requirement, ...]}``.

    Example
    -------
    >>> "pyroomacoustics" in package_extras()["minivox"]
    True
    """
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    section = cfg["options.extras_require"]
    return {k: section[k].split() for k in section}


@pytest.mark.parametrize(
    "folder,extras",
    [
        ("recipes/VoxCeleb/Supervised", ["minivox"]),
        ("recipes/VoxCeleb/SDPN", ["minivox"]),
        ("recipes/VoxCeleb/MixAP", ["minivox"]),
        ("recipes/VoxCeleb/PseudoLabel", ["minivox"]),
        ("recipes/VoxCeleb/INSIDE", ["minivox", "tts"]),
        ("recipes/FFSVC/CLUB", ["minivox"]),
    ],
)
def test_extra_requirements(folder, extras):
    """A recipe's ``extra_requirements.txt`` lists exactly the package
    extras it needs, as ``setup.cfg`` pins them."""
    path = os.path.join(REPO, folder, "extra_requirements.txt")
    with open(path, encoding="utf-8") as f:
        listed = [
            line.strip()
            for line in f
            if line.strip() and not line.startswith("#")
        ]
    expected = [req for extra in extras for req in package_extras()[extra]]
    assert listed == expected, path
