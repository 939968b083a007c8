"""Every hparams key the code reads is in each recipe yaml that runs that code.

The yaml is the single source of a run's settings (ARCHITECTURE.md): a Brain
reads ``self.hparams.<key>`` with no code default, and a recipe reads
``hparams["<key>"]``. This test reads both from the source (ast) and checks
them against the top-level keys of every yaml the recipe loads, so a key that
only one code path reads cannot be forgotten in a yaml until a user hits it.
"""

import ast
import importlib.util
import inspect
import pathlib
import textwrap

import pytest
import ruamel.yaml

from speechbrain_ssv.brains import mixap, sdpn
from speechbrain_ssv.brains.club import DisentangleBrain
from speechbrain_ssv.brains.clustering import REQUIRED_HPARAMS, ClusteringBrain
from speechbrain_ssv.brains.mixap import MixAPBrain
from speechbrain_ssv.brains.pseudolabel import PseudoLabelBrain
from speechbrain_ssv.brains.sdpn import SDPNBrain
from speechbrain_ssv.brains.supervised import SupervisedBrain
from speechbrain_ssv.brains.vae import VAEBrain

ROOT = pathlib.Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"

#: recipe script -> (its Brain, the yamls it is run with). Every yaml under
#: recipes/ must appear once (checked below), so a new yaml is covered.
RUNS = {
    "FFSVC/CLUB/train.py": (
        DisentangleBrain,
        ["club.yaml", "club_minivox.yaml"],
    ),
    "VoxCeleb/INSIDE/train.py": (
        SupervisedBrain,
        ["inside.yaml", "inside_minivox.yaml"],
    ),
    "VoxCeleb/INSIDE/train_gender.py": (
        SupervisedBrain,
        ["gender_minivox.yaml"],
    ),
    "VoxCeleb/MixAP/train.py": (
        MixAPBrain,
        [
            "ap.yaml",
            "ap_minivox.yaml",
            "i_ap.yaml",
            "i_ap_minivox.yaml",
            "l_ap.yaml",
            "l_ap_minivox.yaml",
        ],
    ),
    "VoxCeleb/MixAP/train_vae.py": (VAEBrain, ["vae.yaml", "vae_minivox.yaml"]),
    "VoxCeleb/PseudoLabel/train.py": (
        PseudoLabelBrain,
        ["pseudolabel.yaml", "pseudolabel_minivox.yaml"],
    ),
    "VoxCeleb/SDPN/train.py": (
        SDPNBrain,
        ["sdpn.yaml", "sdpn_minivox.yaml", "dino.yaml", "dino_minivox.yaml"],
    ),
    "VoxCeleb/Supervised/train.py": (
        SupervisedBrain,
        [
            "ecapa.yaml",
            "ecapa_minivox.yaml",
            "mfa_conformer.yaml",
            "mfa_conformer_minivox.yaml",
        ],
    ),
}


#: Brain -> its table of the settings only one method reads (the yaml of
#: another method need not list them).
METHOD_HPARAMS = {
    SDPNBrain: sdpn.METHOD_HPARAMS,
    MixAPBrain: mixap.METHOD_HPARAMS,
}


def _yaml(path):
    """A HyperPyYAML file as a mapping (tags kept, nothing built)."""
    with open(path) as fh:
        return ruamel.yaml.YAML(typ="rt").load(fh)


def _hparams_reads(tree):
    """``x.hparams.<key>`` attribute reads in an ast (a
    ``getattr(hparams, key, default)`` is not one: the few left are
    commented where they are)."""
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "hparams"
        and isinstance(node.ctx, ast.Load)
    }


def brain_reads(cls):
    """Keys a Brain class reads from its hparams: the methods it runs (its
    own and those it inherits from this package's classes; an overridden
    method does not run), plus the module-level functions of their
    modules (helpers that receive the Brain)."""
    keys, seen = set(), set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("speechbrain_ssv"):
            continue
        (node,) = ast.parse(textwrap.dedent(inspect.getsource(klass))).body
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name not in seen:
                seen.add(item.name)
                keys |= _hparams_reads(item)
        module = ast.parse(inspect.getsource(inspect.getmodule(klass)))
        for item in module.body:
            if isinstance(item, ast.FunctionDef):
                keys |= _hparams_reads(item)
    return keys


def recipe_reads(script):
    """String keys a recipe script reads as ``hparams["key"]`` and never
    sets itself (``hparams["key"] = ...`` adds a run-time value)."""
    tree = ast.parse(script.read_text())
    reads, sets = set(), set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == "hparams"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            (sets if isinstance(node.ctx, ast.Store) else reads).add(
                node.slice.value
            )
    return reads - sets


def test_every_recipe_yaml_is_mapped():
    """A new yaml must be added to RUNS, or this test would not cover it."""
    mapped = {
        str(pathlib.Path(script).parent / "hparams" / name)
        for script, (_, names) in RUNS.items()
        for name in names
    }
    found = {
        str(p.relative_to(RECIPES)) for p in RECIPES.glob("*/*/hparams/*.yaml")
    }
    assert found == mapped


@pytest.mark.parametrize(
    "script,name",
    [(s, n) for s, (_, names) in RUNS.items() for n in names],
)
def test_every_hparams_key_read_is_in_the_yaml(script, name):
    """Each key the recipe's Brain or script reads is a top-level yaml key
    (``null`` where the feature is off): no code default decides a run."""
    brain, _ = RUNS[script]
    path = RECIPES / pathlib.Path(script).parent / "hparams" / name
    yaml = _yaml(path)
    # noprogressbar: a run option setup_experiment adds to hparams.
    keys = set(yaml) | {"noprogressbar"}
    needed = brain_reads(brain) | recipe_reads(RECIPES / script)
    table = METHOD_HPARAMS.get(brain)
    if table is not None:
        # Settings of the other methods are not needed; this one's are.
        needed -= {k for keys_ in table.values() for k in keys_}
        needed |= set(table[yaml["method"]])
    missing = sorted(needed - keys)
    assert not missing, f"{path.relative_to(ROOT)} lacks {missing}"


@pytest.mark.parametrize(
    "name", ["pseudolabel.yaml", "pseudolabel_minivox.yaml"]
)
def test_clustering_brain_reads_only_its_listed_settings(name):
    """ClusteringBrain is built from the yaml's ``clustering_hparams``: it
    reads only keys of ``REQUIRED_HPARAMS``, and the yaml lists all of them
    but those the recipe sets from its own run."""
    spec = importlib.util.spec_from_file_location(
        "pseudolabel_clustering_stage",
        RECIPES / "VoxCeleb/PseudoLabel/clustering_stage.py",
    )
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    set_here = set(recipe.SET_BY_THE_RECIPE)
    assert brain_reads(ClusteringBrain) <= set(REQUIRED_HPARAMS)
    path = RECIPES / "VoxCeleb/PseudoLabel/hparams" / name
    with open(path) as fh:
        listed = set(ruamel.yaml.YAML(typ="rt").load(fh)["clustering_hparams"])
    assert set(REQUIRED_HPARAMS) - set_here <= listed
    assert listed <= set(REQUIRED_HPARAMS) | set(recipe.BUILD_KEYS)
