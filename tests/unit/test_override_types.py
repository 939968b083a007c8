"""Command-line overrides are checked against the yaml before anything is built."""

import pathlib

import pytest
import speechbrain as sb

from speechbrain_ssv.utils.errors import HparamsError
from speechbrain_ssv.utils.hparams import load_hparams

REPO = pathlib.Path(__file__).resolve().parents[2]
YAMLS = sorted(REPO.glob("recipes/*/*/hparams/*.yaml"))

YAML = """\
seed: 1986
lr: 0.001
max_lr: !ref <lr>
batch_size: 32
sentence_len: 3.0
number_of_epochs: 10
warmup_epochs: 10
steps_per_epoch: 100
total_steps: !ref <steps_per_epoch> * <number_of_epochs>
output_folder: !ref results/<seed>
export_folder: !ref <output_folder>/pretrained
skip_prep: False
method: sdpn
tts_device: null
split_ratio: [90, 10]
vae_time_stride: [3, 3, 1]
probe_keys: [embedding_model, classifier]
mixed: [1, a]
dataloader_options:
    batch_size: !ref <batch_size>
    shuffle: True
model: !new:torch.nn.Linear
    in_features: 2
    out_features: 2
"""


@pytest.fixture
def hparams_file(tmp_path):
    path = tmp_path / "hparams.yaml"
    path.write_text(YAML)
    return str(path)


def _overrides(*argv):
    """The overrides string that a recipe gets for these arguments."""
    return sb.parse_arguments(["hparams.yaml", *argv])[2]


@pytest.mark.parametrize(
    "key, expected, yaml_value",
    [
        ("lr", "a float", "0.001"),
        ("batch_size", "an int", "32"),
        ("sentence_len", "a float", "3.0"),
        ("number_of_epochs", "an int", "10"),
    ],
)
def test_override_type_error_names_key(hparams_file, key, expected, yaml_value):
    with pytest.raises(HparamsError) as err:
        load_hparams(hparams_file, _overrides(f"--{key}", "abc"))
    assert str(err.value) == (
        f"{hparams_file}: --{key} abc: expected {expected} "
        f"(the yaml has {yaml_value})"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--skip_prep", "yes"], "--skip_prep yes: expected a bool"),
        (["--skip_prep", "1"], "--skip_prep 1: expected a bool"),
        (["--lr", "True"], "--lr true: expected a float"),
        (
            ["--number_of_epochs", "2.0"],
            "--number_of_epochs 2.0: expected an int",
        ),
        (
            ["--max_lr", "abc"],
            r"--max_lr abc: expected a float \(the yaml has !ref <lr>\)",
        ),
        (["--total_steps", "abc"], "--total_steps abc: expected a number"),
        (["--split_ratio", "75"], "--split_ratio 75: expected a list "),
        (
            ["--split_ratio", "[75, abc]"],
            r"--split_ratio \[75, abc\]: expected a list of ints "
            r"\(the yaml has \[90, 10\]\)",
        ),
        (["--method", "[a, b]"], "--method \\[a, b\\]: expected a string"),
        (["--model", "3"], "--model 3: expected an object"),
        (
            ["--dataloader_options", "{batch_size: abc}"],
            "--dataloader_options.batch_size abc: expected an int",
        ),
        (
            ["--dataloader_options", "4"],
            "--dataloader_options 4: expected a mapping",
        ),
    ],
)
def test_mistyped_overrides_are_refused(hparams_file, argv, message):
    with pytest.raises(HparamsError, match=message):
        load_hparams(hparams_file, _overrides(*argv))


def test_dict_overrides_are_checked(hparams_file):
    with pytest.raises(HparamsError, match="--batch_size abc: expected an int"):
        load_hparams(hparams_file, {"batch_size": "abc"})


def test_duplicate_override_is_named(hparams_file):
    with pytest.raises(HparamsError) as err:
        load_hparams(hparams_file, _overrides("--lr", "0.1", "--lr", "0.2"))
    assert (
        str(err.value)
        == f"{hparams_file}: --lr given twice (give each override once)"
    )


def test_int_for_float_and_numbers(hparams_file):
    hp = load_hparams(
        hparams_file,
        _overrides(
            "--lr",
            "1",
            "--sentence_len",
            "2",
            "--warmup_epochs",
            "0.5",
            "--total_steps",
            "7",
            "--max_lr",
            "2",
        ),
    )
    assert hp["lr"] == 1 and hp["sentence_len"] == 2
    assert hp["warmup_epochs"] == 0.5
    assert hp["total_steps"] == 7 and hp["max_lr"] == 2


def test_null_and_text_keys_accept_any_scalar(hparams_file):
    hp = load_hparams(
        hparams_file,
        _overrides(
            "--tts_device",
            "cpu",
            "--method",
            "7",
            "--export_folder",
            "",
            "--output_folder",
            "/x",
        ),
    )
    assert hp["tts_device"] == "cpu" and hp["method"] == 7
    assert hp["export_folder"] is None and hp["output_folder"] == "/x"
    hp = load_hparams(hparams_file, _overrides("--tts_device", "[1, 2]"))
    assert hp["tts_device"] == [1, 2]


def test_list_and_object_overrides(hparams_file):
    hp = load_hparams(
        hparams_file,
        _overrides(
            "--split_ratio",
            "[75, 25]",
            "--vae_time_stride",
            "null",
            "--probe_keys",
            "[]",
            "--mixed",
            "[x, 2, 3.5]",
            "--model",
            "null",
        ),
    )
    assert hp["split_ratio"] == [75, 25] and hp["vae_time_stride"] is None
    assert hp["probe_keys"] == [] and hp["model"] is None
    hp = load_hparams(
        hparams_file,
        _overrides(
            "--model",
            "!new:torch.nn.Linear {in_features: 3, out_features: 1}",
            "--dataloader_options",
            "{shuffle: False, batch_size: 4}",
        ),
    )
    assert hp["model"].in_features == 3
    assert hp["dataloader_options"] == {"batch_size": 4, "shuffle": False}


def test_unknown_key_still_named(hparams_file):
    with pytest.raises(HparamsError, match="unknown hparams key 'bacth_size'"):
        load_hparams(hparams_file, _overrides("--bacth_size", "8"))


# Typical overrides of each kind; a recipe yaml that lacks a key is not asked.
TYPICAL = [
    ("--number_of_epochs", "2"),
    ("--lr", "0.01"),
    ("--lr", "1"),
    ("--batch_size", "4"),
    ("--sentence_len", "2"),
    ("--split_ratio", "[75, 25]"),
    ("--export_folder", ""),
    ("--table1_row", "6"),
    ("--verification_file", "list_test_all2.txt"),
    ("--pretrained_frontend", "null"),
    ("--tts_device", "cpu"),
    ("--skip_prep", "True"),
    ("--num_workers", "0"),
    ("--warmup_epochs", "0.5"),
    ("--vae_time_stride", "null"),
    ("--prepare_noise_data", "null"),
    ("--seed", "3"),
    ("--output_folder", "OUT"),
]


@pytest.mark.parametrize(
    "path", YAMLS, ids=lambda p: f"{p.parent.parent.name}/{p.name}"
)
def test_recipe_yamls_accept_typical_overrides(path, tmp_path, monkeypatch):
    # Only the check runs: building every recipe's modules is
    # test_recipe_hparams.py's job, and would be slow here.
    import speechbrain_ssv.utils.hparams as hparams_module

    monkeypatch.setattr(hparams_module, "load_hyperpyyaml", lambda *a: {})
    keys = set(hparams_module._top_level_keys(path.read_text()))
    given = {"--data_folder": str(tmp_path)}
    for flag, value in TYPICAL:
        if flag[2:] in keys:
            given[flag] = value.replace("OUT", str(tmp_path / "out"))
    load_hparams(
        str(path), _overrides(*(x for kv in given.items() for x in kv))
    )
    # Each typical override alone too, as a later one replaces an earlier.
    for flag, value in TYPICAL:
        if flag[2:] in keys:
            load_hparams(str(path), _overrides(flag, value))


@pytest.mark.parametrize(
    "path",
    [REPO / "recipes/VoxCeleb/SDPN/hparams/sdpn_minivox.yaml"],
    ids=lambda p: p.name,
)
def test_recipe_yaml_loads_with_overrides(path, tmp_path):
    hp = load_hparams(
        str(path),
        _overrides(
            "--data_folder",
            str(tmp_path),
            "--output_folder",
            str(tmp_path / "out"),
            "--number_of_epochs",
            "2",
            "--lr",
            "1",
            "--split_ratio",
            "[75, 25]",
            "--export_folder",
            "",
        ),
    )
    assert hp["number_of_epochs"] == 2 and hp["split_ratio"] == [75, 25]


def test_typical_overrides_name_recipe_keys():
    # A typo in TYPICAL would silently test nothing above.
    keys = set()
    for path in YAMLS:
        keys.update(k.split(":")[0] for k in path.read_text().splitlines())
    assert {flag[2:] for flag, _ in TYPICAL} <= keys
