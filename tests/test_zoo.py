"""Shipped models: listing with card info, the default (mixed, 3 layers), `--model` resolution, `arithlens models`."""

import json
from pathlib import Path

import pytest
from helpers import arithlens_here

from arithlens.errors import ArithLensError, CheckpointError
from arithlens.model import (
    HookedTransformer,
    ModelSpec,
    load_checkpoint,
    save_checkpoint,
)
from arithlens.model.zoo import (
    MODELS_ENV,
    default_model_name,
    list_models,
    models_dir,
    resolve_model,
)

SIZES = dict(d_model=16, d_head=4, d_mlp=8)


def ship(directory, name, extra=None, dirname=None):
    spec = ModelSpec.parse(name, **SIZES)
    return save_checkpoint(HookedTransformer(spec, seed=0), spec, directory / (dirname or name), extra)


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    directory = tmp_path / "models"
    ship(directory, "add_d6_l2_h3_t8K_s372001", {"accuracy": {"questions": 1_100_000, "wrong": 0}})
    ship(directory, "mix_d6_l2_h4_t10K_s372001")
    ship(directory, "mix_d6_l3_h4_t12K_s372001", {"accuracy": {"questions": 3_100_000, "wrong": 0}})
    monkeypatch.setenv(MODELS_ENV, str(directory))
    return directory


def test_models_dir_defaults_to_the_package_and_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert models_dir().parts[-2:] == ("arithlens", "models")
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    assert models_dir() == tmp_path


def test_list_models_reads_name_shape_card_and_size(zoo):
    models = list_models()
    assert [m.name for m in models] == ["add_d6_l2_h3_t8K_s372001", "mix_d6_l2_h4_t10K_s372001",
                                        "mix_d6_l3_h4_t12K_s372001"]
    row = models[0].summary()
    assert row["op"] == "add" and (row["layers"], row["heads"], row["d_model"]) == (2, 3, 16)
    assert row["accuracy"] == "0 wrong / 1,100,000" and models[1].summary()["accuracy"] is None
    weights = (zoo / "add_d6_l2_h3_t8K_s372001" / "model.safetensors").stat().st_size
    assert row["size_bytes"] > weights > 0


def test_a_directory_without_checkpoint_files_is_not_a_model(zoo):
    (zoo / "notes").mkdir()
    (zoo / "README.md").write_text("models")
    assert len(list_models()) == 3


def test_default_is_the_mixed_three_layer_model(zoo):
    assert default_model_name() == "mix_d6_l3_h4_t12K_s372001"
    assert resolve_model() == zoo / "mix_d6_l3_h4_t12K_s372001"


def test_a_card_marked_default_wins(zoo):
    ship(zoo, "add_d6_l1_h1_t1K_s000001", {"default": True})
    assert default_model_name() == "add_d6_l1_h1_t1K_s000001"


def test_without_a_mixed_model_the_default_falls_back_to_any(tmp_path):
    ship(tmp_path, "add_d6_l2_h3_t8K_s372001")
    assert default_model_name(tmp_path) == "add_d6_l2_h3_t8K_s372001"


def test_no_shipped_model_is_a_one_line_error_naming_the_flag(tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "empty"))
    with pytest.raises(ArithLensError, match=r"^no model is shipped in .*; pass --model PATH") as info:
        resolve_model()
    assert "\n" not in str(info.value)


def test_names_aliases_and_paths_resolve(zoo, tmp_path):
    assert resolve_model("add_d6_l2_h3_t8K_s372001") == zoo / "add_d6_l2_h3_t8K_s372001"
    assert resolve_model("add") == zoo / "add_d6_l2_h3_t8K_s372001"  # the only adder
    local = ship(tmp_path, "sub_d6_l1_h1_t1K_s000001", dirname="elsewhere")
    assert resolve_model(str(local)) == local
    assert resolve_model(local / "model.safetensors") == local / "model.safetensors"
    assert load_checkpoint(resolve_model("add")).spec.name == "add_d6_l2_h3_t8K_s372001"


def test_a_directory_name_other_than_the_spec_name_resolves_by_both(tmp_path):
    ship(tmp_path, "mix_d6_l3_h4_t12K_s372001", dirname="mixer")
    assert resolve_model("mixer", tmp_path) == tmp_path / "mixer"
    assert resolve_model("mix_d6_l3_h4_t12K_s372001", tmp_path) == tmp_path / "mixer"


def test_an_alias_shared_by_two_models_names_the_default_or_is_ambiguous(zoo, tmp_path):
    assert resolve_model("mix") == zoo / "mix_d6_l3_h4_t12K_s372001"  # the default among the mixed models
    ship(tmp_path, "add_d6_l2_h3_t8K_s372001")
    ship(tmp_path, "add_d6_l2_h3_t8K_s372002")
    ship(tmp_path, "mix_d6_l3_h4_t10K_s372001")
    with pytest.raises(ArithLensError, match="model alias 'add' matches 2 shipped models .*; give the full name"):
        resolve_model("add", tmp_path)


def test_unknown_model_error_lists_the_shipped_names(zoo):
    with pytest.raises(ArithLensError) as info:
        resolve_model("xyz")
    assert str(info.value).startswith(
        "unknown model 'xyz': not a shipped model (add_d6_l2_h3_t8K_s372001, mix_d6_l2_h4_t10K_s372001, "
        "mix_d6_l3_h4_t12K_s372001) or an existing path")


def test_a_broken_card_is_a_checkpoint_error_naming_the_file(zoo):
    (zoo / "mix_d6_l2_h4_t10K_s372001" / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"model card '.*mix_d6_l2_h4_t10K_s372001/model.json' is unreadable"):
        list_models()


def test_models_command_lists_shipped_models_and_marks_the_default(zoo, monkeypatch, capsys):
    code, out, _ = arithlens_here(monkeypatch, capsys, "models")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "op", "layers", "heads", "d_model", "size", "accuracy"]
    assert lines[3].startswith("* mix_d6_l3_h4_t12K_s372001") and lines[3].endswith("0 wrong / 3,100,000")
    assert lines[1].split()[:5] == ["add_d6_l2_h3_t8K_s372001", "add", "2", "3", "16"]
    code, out, _ = arithlens_here(monkeypatch, capsys, "models", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["default"] for r in rows] == [False, False, True]
    assert rows[2]["layers"] == 3 and rows[2]["heads"] == 4 and rows[2]["size_bytes"] > 0


def test_models_command_with_nothing_shipped_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    code, out, _ = arithlens_here(monkeypatch, capsys, "models")
    assert code == 0 and out.startswith("no models are shipped")


def test_ship_model_script_copies_an_exact_run_with_its_card_and_refuses_the_rest(tmp_path):
    """scripts/ship_model.py: an exact run ships with its card (sha256, accuracy, stress, reproduce command);
    a run with a wrong answer or an existing target is refused with exit code 2 and nothing written."""
    import hashlib
    import importlib.util

    script = Path(__file__).parent.parent / "scripts" / "ship_model.py"
    loader = importlib.util.spec_from_file_location("ship_model", script)
    ship_model = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(ship_model)
    run = tmp_path / "run"
    ship(tmp_path, "mix_d6_l2_h4_t10K_s372009", {"training": {"command": "arithlens train ... --threads 2"}},
         dirname="run")
    config = tmp_path / "recipe.json"
    config.write_text('{"shared_high": 0.05}')
    stress = {"questions": 40, "wrong": 0, "failures": []}
    good = tmp_path / "eval.json"
    good.write_text(json.dumps({"model": "mix_d6_l2_h4_t10K_s372009", "questions": 100, "wrong": 0,
                                "kinds": {"stress": stress}}))
    models = tmp_path / "models"
    args = [str(run), str(good), "--config", str(config), "--models-dir", str(models)]
    assert ship_model.main(args) == 0
    shipped = list_models(models)
    assert [m.name for m in shipped] == ["mix_d6_l2_h4_t10K_s372009"]
    card = shipped[0].card
    weights = (models / "mix_d6_l2_h4_t10K_s372009" / "model.safetensors").read_bytes()
    assert card["training"]["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert weights == (run / "model.safetensors").read_bytes()
    assert card["stress"]["questions"] == 40 and card["accuracy"]["wrong"] == 0
    assert "--threads 2" in card["reproduce"] and "train_config.json" in card["reproduce"]
    assert "--device" not in card["reproduce"]
    recipe = json.loads((models / "mix_d6_l2_h4_t10K_s372009" / "train_config.json").read_text())
    assert recipe == {"shared_high": 0.05}
    assert ship_model.main(args) == 2  # exists: --force needed
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "mix_d6_l2_h4_t10K_s372009", "questions": 100, "wrong": 1}))
    other = tmp_path / "other_models"
    assert ship_model.main([str(run), str(bad), "--config", str(config), "--models-dir", str(other)]) == 2
    assert not other.exists()
    assert card["exact"] is True
    # --inexact ships it, marked: a study over every seed of a recipe needs the seeds that missed too
    assert ship_model.main([str(run), str(bad), "--config", str(config), "--models-dir", str(other), "--inexact"]) == 0
    marked = list_models(other)[0]
    assert marked.card["exact"] is False and marked.summary()["accuracy"] == "1 wrong / 100"


def test_ship_model_script_names_the_gpu_in_the_reproduce_command(tmp_path):
    """A run trained on CUDA is reproduced with `--device cuda` (CPU kernels give other weights)."""
    import importlib.util

    script = Path(__file__).parent.parent / "scripts" / "ship_model.py"
    loader = importlib.util.spec_from_file_location("ship_model", script)
    ship_model = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(ship_model)
    ship(tmp_path, "mix_d6_l2_h4_t10K_s372009",
         {"training": {"command": "arithlens train ... --device cuda --threads 2", "device": "cuda"}}, dirname="run")
    config = tmp_path / "recipe.json"
    config.write_text("{}")
    data = ship_model.card(tmp_path / "run", {"questions": 10, "wrong": 0}, config, "an H200")
    assert data["reproduce"].endswith("--out runs/mix_d6_l2_h4_t10K_s372009 --device cuda --threads 2")
    assert data["training"]["machine"] == "an H200"
