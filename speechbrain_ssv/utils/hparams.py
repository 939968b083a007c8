"""Loading HyperPyYAML files with errors that name the file and the key.

Authors
 * speechbrain-ssv developers 2026
"""

import ast
import collections.abc
import os
import re

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.scalarbool import ScalarBoolean

from speechbrain_ssv.utils.errors import HparamsError

# Tags whose node builds a Python object; an override may swap one for
# another because ``!new:`` and ``!apply:`` both yield an instance (the
# recipes use both for ``embedding_model``).
_OBJECT_TAGS = ("!new:", "!name:", "!apply:")

# Keys that the yamls write as an int although a fraction is meaningful
# (``warmup_epochs: 10`` in sdpn.yaml, ``0.2`` in dino_minivox.yaml), so a
# float override is not refused. ``ckpt_interval_minutes`` is not here:
# SpeechBrain consumes it as a run option and types it itself.
_REAL_VALUED_KEYS = frozenset({"warmup_epochs"})

_SINGLE_REF = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")
_ANY_REF = re.compile(r"<[^>]*>")


def load_hparams(hparams_file, overrides=None, required=()):
    """Load a HyperPyYAML file, turning hyperpyyaml's errors into an
    :class:`HparamsError` that names the file and the offending key.

    Every override is checked against the value it replaces in the yaml
    file before anything is built, so ``--lr abc`` is reported here by name
    instead of failing later inside ``torch.optim``. The file's top-level
    values are read as written (``!ref`` expressions and object tags are
    not resolved) and an override must fit the value it replaces:

    * a **float** accepts an int or a float (``--lr 1`` is fine);
    * an **int** accepts an int only: a float, even ``2.0``, is refused
      because counts and sizes end up in ``range`` or tensor shapes.
      ``warmup_epochs`` is real-valued although some yamls write an int
      (``10`` in sdpn.yaml, ``0.2`` in dino_minivox.yaml), so it takes a
      float too;
    * a **bool** accepts only a YAML bool (``true``/``false``/``True``/
      ``False``); ``yes`` or ``1`` are refused;
    * a **string** accepts any scalar, converted by YAML as usual
      (``--verification_file 2`` gives the string's place an int);
    * a **null** accepts any value: null marks an optional part whose
      type the file cannot show (``--tts_device cpu``);
    * a **list** accepts a list or null (null turns an optional list
      off, e.g. ``vae_time_stride``); when the yaml list is non-empty and
      its items share one scalar type, every item of the override must
      fit that type by these rules (``--split_ratio "[75, 25]"``);
    * a **mapping** accepts a mapping whose keys present in the yaml are
      checked by these rules (``--dataloader_options "{batch_size: 4}"``);
    * a ``!new:``/``!name:``/``!apply:`` **object** accepts another such
      object or null (the recipes document null to switch a step off,
      e.g. ``prepare_noise_data``); a Python object given in a dict of
      overrides is accepted as built by the caller;
    * a ``!ref`` **expression** is checked against what it will become:
      a single reference ``!ref <lr>`` by the rules of the key it names,
      arithmetic (``!ref <a> * <b>``) needs a number, and any other
      expression is text (a path) and accepts any scalar
      (``--export_folder ""`` gives null, which is accepted);
    * ``!PLACEHOLDER`` and other tags accept any value: their type is not
      known before the file is resolved.

    An override written as a ``!ref`` expression is accepted everywhere,
    as its type is only known once references are resolved. The same
    override given twice is refused (``--lr 0.1 --lr 0.2``), and a key
    that the file does not have is refused with the list of its keys.

    Arguments
    ---------
    hparams_file : str
        Path of the yaml file.
    overrides : str | dict | None
        Overrides as given by ``speechbrain.parse_arguments``.
    required : sequence of str
        Keys the caller needs; a missing one is reported by name.

    Returns
    -------
    dict
        The loaded hyperparameters.

    Raises
    ------
    HparamsError
        When the file is missing or invalid, an override names an unknown
        key, is given twice or does not fit the value it replaces, or a
        required key is missing. The message names the file, the key, the
        value given and the type expected.

    Example
    -------
    >>> import os
    >>> p = os.path.join(getfixture("tmpdir"), "h.yaml")
    >>> _ = open(p, "w").write("lr: 0.1\\nbatch_size: 4\\n")
    >>> load_hparams(p, {"lr": 0.5})["lr"]
    0.5
    >>> load_hparams(p, "bacth_size: 8")
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.HparamsError: ...: unknown hparams key 'bacth_size' (overrides must name keys of the file; it has: batch_size, lr)
    >>> load_hparams(p, "lr: abc")
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.HparamsError: ...h.yaml: --lr abc: expected a float (the yaml has 0.1)
    """
    hparams_file = os.fspath(hparams_file)
    if not os.path.isfile(hparams_file):
        raise HparamsError(hparams_file, "hparams file does not exist")
    overrides = overrides or {}
    with open(hparams_file, encoding="utf-8") as fin:
        text = fin.read()
    _check_overrides(hparams_file, text, overrides)
    try:
        hparams = load_hyperpyyaml(text, overrides)
    except KeyError as err:
        msg = str(err.args[0]) if err.args else str(err)
        if msg.startswith("Override '"):
            key = msg.split("'")[1]
            known = _top_level_keys(text)
            raise HparamsError(
                hparams_file,
                f"unknown hparams key '{key}' (overrides must name keys of "
                f"the file; it has: {', '.join(sorted(known))})",
            ) from None
        raise HparamsError(
            hparams_file, f"reference to a missing key: {msg}"
        ) from None
    except ValueError as err:
        if "PLACEHOLDER" in str(err) or "placeholder" in str(err).lower():
            raise HparamsError(
                hparams_file,
                f"a required value was not given ({err}); pass it on the "
                "command line, e.g. --data_folder /path/to/voxceleb",
            ) from None
        raise HparamsError(hparams_file, str(err)) from None
    missing = [k for k in required if k not in hparams]
    if missing:
        raise HparamsError(
            hparams_file, f"missing required key(s): {', '.join(missing)}"
        )
    return hparams


def _top_level_keys(text):
    keys = []
    for line in text.splitlines():
        if (
            line
            and not line[0].isspace()
            and not line.startswith("#")
            and ":" in line
        ):
            keys.append(line.split(":", 1)[0].strip())
    return keys


def _check_overrides(hparams_file, text, overrides):
    """Refuse an override that is given twice or does not fit the yaml.

    Arguments
    ---------
    hparams_file : str
        Path of the yaml file, for the messages.
    text : str
        The yaml file's text.
    overrides : str | dict
        Overrides as given to :func:`load_hparams`.

    Raises
    ------
    HparamsError
        On the first override that does not fit (see :func:`load_hparams`).
    """
    # Round-trip mode keeps the tags unresolved and parses scalars exactly
    # as hyperpyyaml will, and it refuses duplicate keys by default.
    yaml = ruamel.yaml.YAML()
    if isinstance(overrides, str):
        try:
            overrides = yaml.load(overrides)
        except DuplicateKeyError as err:
            found = re.search(r'duplicate key "([^"]*)"', str(err.problem))
            key = found.group(1) if found else "an override key"
            raise HparamsError(
                hparams_file,
                f"--{key} given twice (give each override once)",
            ) from None
        except ruamel.yaml.YAMLError as err:
            raise HparamsError(
                hparams_file,
                f"the overrides are not valid YAML ({_first_line(err)})",
            ) from None
    if not isinstance(overrides, collections.abc.Mapping) or not overrides:
        # An empty or malformed overrides object is hyperpyyaml's to report.
        return
    try:
        tree = yaml.load(text)
    except ruamel.yaml.YAMLError as err:
        raise HparamsError(
            hparams_file, f"not valid YAML ({_first_line(err)})"
        ) from None
    if not isinstance(tree, collections.abc.Mapping):
        return
    for key, value in overrides.items():
        # Unknown keys are left to load_hyperpyyaml, which names them.
        if key in tree:
            _check_value(hparams_file, str(key), value, tree[key], tree)


def _check_value(hparams_file, name, value, node, tree, shown=None, seen=()):
    """Check one override ``value`` against the yaml ``node`` it replaces.

    Arguments
    ---------
    hparams_file : str
        Path of the yaml file, for the messages.
    name : str
        The key, dotted for a nested one (``dataloader_options.batch_size``).
    value : object
        The override, as parsed by YAML (or given in a dict).
    node : object
        The yaml value, read in round-trip mode.
    tree : mapping
        The yaml file's top level, to follow a ``!ref <key>``.
    shown : object
        The yaml value quoted in the message (the ``!ref`` itself when
        ``node`` is the value that it names); ``node`` when None.
    seen : tuple of str
        Keys already followed, so a circular reference stops.

    Raises
    ------
    HparamsError
        When ``value`` does not fit ``node``.
    """
    shown = node if shown is None else shown
    expected = _expected(name, value, node, tree, seen)
    if expected is None:
        # Lists and mappings are checked item by item once their own kind
        # is right; so is a single reference, against the key it names.
        if _tag(node) == "!ref":
            ref = _SINGLE_REF.fullmatch(str(node.value).strip())
            _check_value(
                hparams_file,
                name,
                value,
                tree[ref.group(1)],
                tree,
                shown,
                (*seen, ref.group(1)),
            )
        elif isinstance(node, collections.abc.Mapping) and isinstance(
            value, collections.abc.Mapping
        ):
            for key, item in value.items():
                if key in node:
                    _check_value(
                        hparams_file, f"{name}.{key}", item, node[key], tree
                    )
        elif _is_list(node) and _is_list(value):
            kind = _item_kind(node)
            if kind is not None and not all(
                _fits_kind(name, item, kind) for item in value
            ):
                raise HparamsError(
                    hparams_file,
                    f"--{name} {_show(value)}: expected a list of "
                    f"{_KIND_PLURAL[kind]} (the yaml has {_show(shown)})",
                )
        return
    if expected:
        raise HparamsError(
            hparams_file,
            f"--{name} {_show(value)}: expected {expected} "
            f"(the yaml has {_show(shown)})",
        )


_KIND_NAMES = {
    "bool": "a bool (true or false)",
    "int": "an int",
    "float": "a float",
    "number": "a number",
    "str": "a string (any scalar)",
}
_KIND_PLURAL = {
    "bool": "bools (true or false)",
    "int": "ints",
    "float": "floats",
    "number": "numbers",
    "str": "scalars",
}


def _expected(name, value, node, tree, seen):
    """What ``value`` should have been, or ``""`` when it fits.

    Returns None when the kind fits but the items (of a list or mapping)
    or the key named by a single ``!ref`` still need checking.
    """
    tag = _tag(node)
    if _tag(value) == "!ref":
        # Its type is only known once references are resolved.
        return ""
    if tag is not None and tag.startswith(_OBJECT_TAGS):
        if value is None or _is_object(value):
            return ""
        return "an object (!new:, !name: or !apply:) or null"
    if tag == "!ref":
        expression = str(node.value).strip()
        ref = _SINGLE_REF.fullmatch(expression)
        if ref and ref.group(1) in tree and ref.group(1) not in seen:
            return None
        if _is_arithmetic(expression):
            return "" if _fits_kind(name, value, "number") else "a number"
        # Text with references in it (a path): any scalar is text too.
        return "" if _is_scalar(value) else "a string (any scalar)"
    if tag is not None:
        # !PLACEHOLDER and tags such as !copy or !tuple: the type is not
        # known before the file is resolved.
        return ""
    if node is None:
        return ""
    if isinstance(node, collections.abc.Mapping):
        if isinstance(value, collections.abc.Mapping):
            return None
        return "a mapping"
    if _is_list(node):
        if value is None:
            return ""
        return None if _is_list(value) else "a list"
    kind = _scalar_kind(node)
    if kind is None:
        # Dates and other scalars are rare enough to be left to the recipe.
        return ""
    if _fits_kind(name, value, kind):
        return ""
    if kind == "int" and name.rsplit(".", 1)[-1] in _REAL_VALUED_KEYS:
        return _KIND_NAMES["number"]
    return _KIND_NAMES[kind]


def _fits_kind(name, value, kind):
    """Whether ``value`` fits a yaml scalar of the given kind."""
    if _tag(value) == "!ref":
        return True
    if kind == "bool":
        return _is_bool(value)
    # bool is an int in Python, but True is no learning rate.
    if _is_bool(value):
        return kind == "str"
    if kind == "int":
        if name.rsplit(".", 1)[-1] in _REAL_VALUED_KEYS:
            return isinstance(value, (int, float))
        return isinstance(value, int)
    if kind in ("float", "number"):
        return isinstance(value, (int, float))
    return _is_scalar(value)


def _scalar_kind(node):
    """The kind of a plain yaml scalar, or None for an unusual one."""
    if _is_bool(node):
        return "bool"
    if isinstance(node, int):
        return "int"
    if isinstance(node, float):
        return "float"
    if isinstance(node, str):
        return "str"
    return None


def _item_kind(node):
    """The kind shared by a yaml list's plain scalar items, else None."""
    kinds = {
        _scalar_kind(item) if _tag(item) is None else None for item in node
    }
    if kinds == {"int", "float"}:
        # [0.5, 1] is a list of numbers; an int item is fine.
        return "float"
    if len(kinds) != 1 or None in kinds:
        return None
    return kinds.pop()


def _is_arithmetic(expression):
    """Whether a ``!ref`` expression is arithmetic on references."""
    # Each reference stands for a number; what is left must be numbers and
    # operators only, as hyperpyyaml's parse_arithmetic would evaluate.
    try:
        body = ast.parse(_ANY_REF.sub("1", expression), mode="eval").body
    except SyntaxError:
        return False
    return all(
        isinstance(
            part,
            (ast.BinOp, ast.UnaryOp, ast.Constant, ast.operator, ast.unaryop),
        )
        and not (
            isinstance(part, ast.Constant)
            and (
                isinstance(part.value, bool)
                or not isinstance(part.value, (int, float))
            )
        )
        for part in ast.walk(body)
    ) and not isinstance(body, ast.Constant)


def _tag(node):
    """The tag written on a round-trip yaml node, or None."""
    if isinstance(node, (TaggedScalar, CommentedMap, CommentedSeq)):
        return getattr(getattr(node, "tag", None), "value", None)
    return None


def _is_object(value):
    """Whether an override builds (or already is) a Python object."""
    tag = _tag(value)
    if tag is not None:
        return tag.startswith(_OBJECT_TAGS)
    # A dict of overrides may hold an object that the caller built.
    return not (
        _is_scalar(value)
        or _is_list(value)
        or isinstance(value, collections.abc.Mapping)
    )


def _is_bool(value):
    # An anchored yaml bool loads as ScalarBoolean, an int subclass.
    return isinstance(value, (bool, ScalarBoolean))


def _is_list(value):
    return isinstance(value, (list, tuple)) and _tag(value) is None


def _is_scalar(value):
    return value is None or isinstance(
        value, (str, int, float, bool, TaggedScalar)
    )


def _show(value):
    """A value as it would be written in YAML, for the messages."""
    tag = _tag(value)
    if isinstance(value, TaggedScalar):
        return f"{tag} {value.value}"
    if tag is not None:
        return tag
    if value is None:
        return "null"
    if _is_bool(value):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value.strip() else repr(value)
    if isinstance(value, collections.abc.Mapping):
        items = ", ".join(f"{k}: {_show(v)}" for k, v in value.items())
        return "{" + items + "}"
    if _is_list(value):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _first_line(err):
    return str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
