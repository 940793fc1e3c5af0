"""Checkpoints: our safetensors + JSON format, safe `.pth` import, spec inference and one-line errors."""

import json
import os
import pickle

import pytest
import torch

from arithlens.errors import ArithLensError, CheckpointError
from arithlens.model import (
    HookedTransformer,
    ModelSpec,
    convert_checkpoint,
    load_checkpoint,
    save_checkpoint,
    spec_from_state_dict,
)

NAME = "ins1_mix_d3_l2_h3_t40K_s372001"
SPEC = ModelSpec.parse(NAME, d_model=24, d_head=8, d_mlp=40)


@pytest.fixture(scope="module")
def model():
    return HookedTransformer(SPEC, seed=11)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 15, (4, SPEC.n_ctx), generator=torch.Generator().manual_seed(2))


def tl_style_state(model):
    """A state dict as TransformerLens writes it: our weights plus its attention buffers."""
    state = dict(model.state_dict())
    for layer in range(model.spec.n_layers):
        state[f"blocks.{layer}.attn.IGNORE"] = torch.tensor(-float("inf"))
        state[f"blocks.{layer}.attn.mask"] = torch.ones(model.spec.n_ctx, model.spec.n_ctx).tril().bool()
    return state


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_and_load_round_trip(model, tokens, tmp_path):
    out = save_checkpoint(model, SPEC, tmp_path / "run", {"training": {"final_loss": 1e-8}, "accuracy": {"wrong": 0}})
    assert sorted(os.listdir(out)) == ["model.json", "model.safetensors"]  # no temporary files left
    ck = load_checkpoint(out)
    assert ck.spec == SPEC and ck.spec_source == "sidecar"
    assert ck.extra == {"training": {"final_loss": 1e-8}, "accuracy": {"wrong": 0}}
    assert_same_weights(ck.model, model)
    torch.testing.assert_close(ck.model(tokens), model(tokens), atol=0, rtol=0)
    sidecar = json.loads((out / "model.json").read_text())
    assert sidecar["spec"]["name"] == NAME and sidecar["format"] == "arithlens-checkpoint/1"


def test_a_safetensors_file_loads_alone_from_its_header(model, tmp_path):
    out = save_checkpoint(model, SPEC, tmp_path / "run")
    lone = tmp_path / "weights.safetensors"
    lone.write_bytes((out / "model.safetensors").read_bytes())
    ck = load_checkpoint(lone)
    assert ck.spec == SPEC and ck.spec_source == "safetensors header"
    assert_same_weights(ck.model, model)
    assert load_checkpoint(out / "model.safetensors").spec_source == "sidecar"


def test_saving_replaces_files_atomically(model, tmp_path, monkeypatch):
    out = save_checkpoint(model, SPEC, tmp_path / "run", {"step": 1})
    before = (out / "model.safetensors").read_bytes()

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(HookedTransformer(SPEC, seed=99), SPEC, out, {"step": 2})
    assert (out / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(out)) == ["model.json", "model.safetensors"]


def test_equal_weights_give_byte_identical_files_and_the_file_still_loads(model, tmp_path):
    # safetensors writes its header maps in a random order per call; ours are canonical.
    blobs = set()
    for i in range(6):
        save_checkpoint(model, None, tmp_path / str(i))
        blobs.add((tmp_path / str(i) / "model.safetensors").read_bytes())
    assert len(blobs) == 1
    blob = blobs.pop()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    assert list(header)[0] == "__metadata__" and list(header["__metadata__"]) == ["format", "spec"]
    starts = [v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"]
    assert starts == sorted(starts)
    loaded = load_checkpoint(tmp_path / "0")
    assert loaded.spec_source == "sidecar"
    alone = load_checkpoint(tmp_path / "0" / "model.safetensors")  # spec read from the rewritten header
    assert alone.spec == model.spec
    for name, value in model.state_dict().items():
        assert torch.equal(alone.model.state_dict()[name], value)


def test_extra_must_be_json_and_may_not_shadow_the_spec(model, tmp_path):
    with pytest.raises(ArithLensError, match="not JSON-serialisable"):
        save_checkpoint(model, SPEC, tmp_path / "a", {"training": {"when": object()}})
    assert not (tmp_path / "a").exists()
    with pytest.raises(ArithLensError, match="may not set 'spec'"):
        save_checkpoint(model, SPEC, tmp_path / "b", {"spec": {}})


def test_saving_with_a_spec_of_another_shape_is_refused(model, tmp_path):
    other = ModelSpec.parse("ins1_mix_d3_l2_h4_t40K_s372001", d_model=24, d_head=8, d_mlp=40)
    with pytest.raises(CheckpointError, match="'blocks.0.attn.W_Q' has shape \\(3, 24, 8\\), expected \\(4, 24, 8\\)"):
        save_checkpoint(model, other, tmp_path / "run")


def test_tl_pth_named_by_its_model_loads_with_spec_from_name_and_sizes_from_tensors(model, tokens, tmp_path):
    path = tmp_path / f"{NAME}.pth"
    torch.save(tl_style_state(model), path)
    ck = load_checkpoint(path)
    assert ck.spec == SPEC and ck.spec_source == "file name"
    assert (ck.spec.perc_sub, ck.spec.insert_mode, ck.spec.training_steps) == (80, 1, 40_000)
    assert_same_weights(ck.model, model)
    torch.testing.assert_close(ck.model(tokens), model(tokens), atol=0, rtol=0)


def test_pth_without_a_model_name_is_refused_rather_than_given_a_guessed_operation(model, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(tl_style_state(model), path)
    with pytest.raises(CheckpointError, match="cannot tell which operation .* give the model name") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)
    ck = load_checkpoint(path, spec=NAME)
    assert ck.spec == SPEC and ck.spec_source == "argument"
    shapes = spec_from_state_dict(tl_style_state(model))  # the sizes alone still come from the shapes
    assert (shapes.n_digits, shapes.n_layers, shapes.n_heads, shapes.d_model, shapes.d_head, shapes.d_mlp) == (
        3, 2, 3, 24, 8, 40)


def test_convert_pth_to_our_format(model, tokens, tmp_path):
    path = tmp_path / f"{NAME}.pth"
    torch.save(tl_style_state(model), path)
    out = convert_checkpoint(path, tmp_path / "converted")
    ck = load_checkpoint(out)
    assert ck.spec == SPEC
    assert ck.extra == {"converted_from": f"{NAME}.pth", "spec_source": "file name"}
    torch.testing.assert_close(ck.model(tokens), model(tokens), atol=0, rtol=0)


def test_load_to_float64(model, tmp_path):
    out = save_checkpoint(model, SPEC, tmp_path / "run")
    ck = load_checkpoint(out, dtype=torch.float64, device="cpu")
    assert ck.model.embed.W_E.dtype == torch.float64 and ck.model.device.type == "cpu"


def test_loaded_model_owns_its_weights(model, tmp_path):
    state = tl_style_state(model)
    path = tmp_path / f"{NAME}.pth"
    torch.save(state, path)
    ck = load_checkpoint(path)
    with torch.no_grad():
        ck.model.embed.W_E.zero_()
    assert model.embed.W_E.abs().sum() > 0


# ---- errors ----


def test_name_and_tensors_that_disagree_name_the_tensor_and_both_shapes(model, tmp_path):
    path = tmp_path / "ins1_mix_d3_l2_h4_t40K_s372001.pth"  # the file claims 4 heads; it holds 3
    torch.save(tl_style_state(model), path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (
        "checkpoint tensor 'blocks.0.attn.W_Q' has shape (3, 24, 8), expected (4, 24, 8)"
        " for ins1_mix_d3_l2_h4_t40K_s372001"
    )


def test_missing_and_unexpected_tensors_are_named(model, tmp_path):
    state = tl_style_state(model)
    del state["blocks.1.mlp.b_out"]
    torch.save(state, tmp_path / f"{NAME}.pth")
    with pytest.raises(CheckpointError, match=r"lacks tensor 'blocks.1.mlp.b_out' of shape \(24,\)"):
        load_checkpoint(tmp_path / f"{NAME}.pth")
    one_layer = "ins1_mix_d3_l1_h3_t40K_s372001.pth"
    torch.save(tl_style_state(model), tmp_path / one_layer)
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'blocks.1.ln1.w' \(and 15 more\)"):
        load_checkpoint(tmp_path / one_layer)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a checkpoint at all", "is corrupt or not a safe state dict"),
        (b"not a checkpoint at all", "not a PyTorch file at all"),
        (pickle.dumps(ModelSpec(), protocol=2), "holds Python objects, which a safe \\(weights_only\\) load refuses"),
    ],
)
def test_corrupt_or_unsafe_pth_is_a_one_line_error(tmp_path, content, message):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_pth_that_is_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        load_checkpoint(tmp_path / "x.pth")


def test_truncated_safetensors_is_a_one_line_error(model, tmp_path):
    out = save_checkpoint(model, SPEC, tmp_path / "run")
    data = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is corrupt or unreadable") as err:
        load_checkpoint(out)
    assert "\n" not in str(err.value)


def test_bad_sidecar_is_an_error(model, tmp_path):
    out = save_checkpoint(model, SPEC, tmp_path / "run")
    (out / "model.json").write_text("{")
    with pytest.raises(CheckpointError, match="sidecar .* is not valid JSON"):
        load_checkpoint(out)
    (out / "model.json").write_text(json.dumps({"format": "arithlens-checkpoint/1", "spec": {"n_layers": 0}}))
    with pytest.raises(CheckpointError, match="has a bad spec: n_layers 0"):
        load_checkpoint(out)


def test_missing_paths_and_unknown_kinds(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="weights .* do not exist"):
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is not a directory, .safetensors or .pth/.pt file"):
        load_checkpoint(tmp_path / "model.bin")


def test_shapes_that_are_no_arithmetic_model(model):
    state = dict(model.state_dict())
    state["pos_embed.W_pos"] = torch.zeros(12, 24)
    with pytest.raises(CheckpointError, match="n_ctx 12, not 3 \\* n_digits \\+ 4"):
        spec_from_state_dict(state)
    with pytest.raises(CheckpointError, match="lacks tensor 'embed.W_E'"):
        spec_from_state_dict({})


def test_non_finite_weights_are_refused_naming_the_tensor(model, tmp_path):
    state = tl_style_state(model)
    state["blocks.0.attn.W_Q"][0, 0, 0] = float("nan")
    state["blocks.0.attn.W_Q"][0, 0, 1] = float("inf")
    torch.save(state, tmp_path / f"{NAME}.pth")
    with pytest.raises(CheckpointError, match="'blocks.0.attn.W_Q' holds 2 non-finite values"):
        load_checkpoint(tmp_path / f"{NAME}.pth")


def test_random_bytes_are_not_a_pytorch_file_and_a_pickle_of_objects_is_named_so(tmp_path):
    path = tmp_path / "x.pth"
    path.write_bytes(bytes(range(1, 256)) * 4)  # starts with neither PK nor the pickle protocol byte
    with pytest.raises(CheckpointError, match="not a PyTorch file at all") as err:
        load_checkpoint(path)
    assert "Python objects" not in str(err.value)
    path.write_bytes(pickle.dumps({"w": ModelSpec()}, protocol=2))
    with pytest.raises(CheckpointError, match="a pickle that holds Python objects"):
        load_checkpoint(path)
