"""ModelSpec: the reference model-name grammar (the predecessor's names), defaults and JSON."""

import dataclasses
import json

import pytest

from arithlens.errors import ArithLensError, ParseError
from arithlens.model import GRAMMAR, ModelSpec

# Every model name the predecessor published.
REFERENCE_NAMES = [
    "add_d5_l2_h3_t15K_s372001",
    "add_d5_l1_h3_t15K_s372001",
    "add_d5_l1_h3_t30K_s372001",
    "add_d5_l2_h3_t40K_s372001",
    "add_d6_l2_h3_t15K_s372001",
    "add_d6_l2_h3_t20K_s173289",
    "add_d6_l2_h3_t20K_s572091",
    "add_d6_l2_h3_t40K_s372001",
    "add_d10_l2_h3_t40K_s572091",
    "add_d10_l2_h3_t40K_gf_s572091",
    "add_d15_l2_h3_t80K_s572091",
    "add_d20_l2_h3_t80K_s572091",
    "add_d7_l6_h5_t40K_s572077",
    "sub_d6_l2_h3_t30K_s372001",
    "sub_d10_l2_h3_t75K_s173289",
    "sub_d10_l2_h3_t75K_gf_s173289",
    "mix_d6_l3_h4_t40K_s372001",
    "mix_d10_l3_h4_t75K_s173289",
    "mix_d10_l3_h4_t75K_gf_s173289",
    "mul_d6_l3_h4_t75K_s372001",
    "ins1_mix_d6_l3_h4_t40K_s372001",
    "ins1_mix_d6_l3_h4_t40K_s173289",
    "ins1_mix_d6_l3_h4_t50K_s572091",
    "ins1_mix_d6_l3_h3_t40K_s572091",
    "ins1_mix_d6_l2_h3_t40K_s572091",
    "ins1_mix_d6_l3_h3_t80K_s572091",
    "ins1_mix_d10_l3_h3_t50K_s572091",
    "ins1_mix_d10_l3_h3_t50K_gf_s572091",
    "ins1_mix_d10_l3_h5_t50K_s572091",
    "ins2_mix_d6_l4_h4_t40K_s372001",
    "ins3_mix_d6_l4_h3_t40K_s372001",
    "ins4_mix_d6_l4_h3_t40K_s372001",
    "ins1_mas_d6_l3_h4_t75K_s371793",
    "ins1_mas_d6_l5_h4_t75K_gf_s371793",
    "ins1_mas_d6_l5_h4_t250K_gf_s371793",
    "ins1_mix_d6_l3_h4_t40K_s372001,add_d6_l2_h3_t15K_s372001",
    "ins1_mas_d6_l3_h4_t75K_s371793,ins1_mix_d6_l3_h4_t40K_s372001",
    "ins1_mix_d6_l3_h3_t80K_s572091,add_d6_l2_h3_t40K_s372001",
]


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_reference_names_round_trip_losslessly(name):
    spec = ModelSpec.parse(name)
    assert spec.name == name
    assert ModelSpec.parse(spec.name) == spec


def test_appendix_a_mixed_name_fields():
    spec = ModelSpec.parse("ins1_mix_d10_l3_h5_t50K_s572091")
    assert (spec.insert_mode, spec.n_digits, spec.n_layers, spec.n_heads) == (1, 10, 3, 5)
    assert (spec.training_steps, spec.seed, spec.grokfast, spec.op) == (50_000, 572_091, False, "mix")


def test_appendix_a_mas_name_keeps_mas_and_its_percentages():
    spec = ModelSpec.parse("ins1_mas_d6_l5_h4_t250K_gf_s371793")
    assert (spec.perc_add, spec.perc_sub, spec.perc_mul) == (20, 30, 50)
    assert spec.grokfast and spec.training_steps == 250_000
    assert spec.op == "mas" and spec.name.startswith("ins1_mas_")


def test_appendix_a_insert_name_fields():
    spec = ModelSpec.parse("ins1_mix_d6_l3_h4_t40K_s372001,add_d7_l6_h5_t40K_s572077")
    assert spec.insert_name == "add_d7_l6_h5_t40K_s572077"
    small = spec.insert_spec
    assert (small.n_digits, small.n_layers, small.n_heads) == (7, 6, 5)
    assert (small.training_steps, small.seed, small.op) == (40_000, 572_077, "add")
    assert spec.base_name == "ins1_mix_d6_l3_h4_t40K_s372001"


@pytest.mark.parametrize(
    "name, add_sub_mul",
    [
        ("add_d6_l2_h3_t15K_s372001", (100, 0, 0)),
        ("sub_d6_l2_h3_t30K_s372001", (0, 100, 0)),
        ("mul_d6_l3_h4_t75K_s372001", (0, 0, 100)),
        ("mix_d6_l3_h4_t40K_s372001", (34, 66, 0)),
        ("ins1_mix_d6_l3_h4_t40K_s372001", (20, 80, 0)),
        ("ins1_mas_d6_l3_h4_t75K_s371793", (20, 30, 50)),
    ],
)
def test_operation_sets_the_question_mix(name, add_sub_mul):
    spec = ModelSpec.parse(name)
    assert (spec.perc_add, spec.perc_sub, spec.perc_mul) == add_sub_mul


def test_sizes_default_to_the_reference_models():
    spec = ModelSpec.parse("add_d6_l2_h3_t15K_s372001")
    assert (spec.d_model, spec.d_head, spec.d_mlp, spec.act_fn, spec.d_vocab) == (510, 170, 2040, "relu", 15)


def test_size_overrides_and_d_mlp_follows_d_model():
    spec = ModelSpec.parse("add_d6_l2_h3_t15K_s372001", d_model=128, d_head=32)
    assert (spec.d_model, spec.d_head, spec.d_mlp) == (128, 32, 512)
    assert ModelSpec.parse("add_d6_l2_h3_t15K_s372001", d_mlp=100).d_mlp == 100
    assert spec.name == "add_d6_l2_h3_t15K_s372001"


def test_mix_percentage_can_be_overridden_like_the_seed_notebook():
    spec = ModelSpec.parse("mix_d6_l3_h4_t40K_s372001", perc_sub=80)
    assert (spec.perc_add, spec.perc_sub) == (20, 80)


def test_layout_and_context_follow_n_digits():
    spec = ModelSpec.parse("add_d6_l2_h3_t15K_s372001")
    assert spec.n_ctx == 22 == spec.layout.n_ctx
    assert list(spec.layout.answer_logit_positions) == list(range(13, 21))
    assert ModelSpec.parse("add_d5_l2_h3_t15K_s372001").n_ctx == 19
    assert ModelSpec.parse("add_d10_l2_h3_t40K_s572091").n_ctx == 34


@pytest.mark.parametrize(
    "bad",
    [
        "add_d6_x",
        "",
        "add",
        "div_d6_l2_h3_t15K_s372001",
        "ADD_d6_l2_h3_t15K_s372001",
        "xadd_d6_l2_h3_t15K_s372001",  # a substring search would accept these two
        "add_d6_l2_h3_t15K_s372001_extra",
        "add_d6_l2_h3_t15K_s37200",  # seed is exactly six digits
        "add_d6_l2_h3_t15K_s3720011",
        "add_d06_l2_h3_t15K_s372001",  # leading zeros would not round-trip
        "add_d6_l2_h3_t015K_s372001",
        "add_d0_l2_h3_t15K_s372001",
        "add_d6_l2_h3_s372001",
        "add_d6_l2_h3_t15K_gf",
        "add_d6_h3_l2_t15K_s372001",
        "add_d6_l2_h3_t15K_s372001_gf",
        "ins_mix_d6_l3_h4_t40K_s372001",
        "ins1mix_d6_l3_h4_t40K_s372001",
        "add_d6_l2_h3_t15K_s372001,",
        "ins1_mix_d6_l3_h4_t40K_s372001,add_d6",
        "ins1_mix_d6_l3_h4_t40K_s372001,add_d6_l2_h3_t15K_s372001,add_d6_l2_h3_t15K_s372001",
        " add_d6_l2_h3_t15K_s372001",
    ],
)
def test_malformed_names_fail_with_one_line_parse_error(bad):
    with pytest.raises(ParseError) as err:
        ModelSpec.parse(bad)
    message = str(err.value)
    assert "\n" not in message and "malformed" in message
    assert GRAMMAR in message


def test_malformed_name_message_names_the_name_and_the_grammar():
    with pytest.raises(
        ParseError, match=r"^model name 'add_d6_x' is malformed: expected \[insM_\]OP_dN_lL_hH_tKK\[_gf\]_sSEED$"
    ):
        ModelSpec.parse("add_d6_x")


def test_insert_mode_beyond_five_is_rejected_with_its_value():
    with pytest.raises(ParseError, match="insert_mode 6 is outside 0..5"):
        ModelSpec.parse("ins6_mix_d6_l3_h4_t40K_s372001")


def test_insert_name_needs_an_insert_mode():
    with pytest.raises(ParseError, match="insert_mode is 0"):
        ModelSpec.parse("mix_d6_l3_h4_t40K_s372001,add_d6_l2_h3_t15K_s372001")


def test_step_counts_that_are_not_thousands_are_written_without_k():
    spec = dataclasses.replace(ModelSpec.parse("add_d6_l2_h3_t15K_s372001"), training_steps=1500)
    assert spec.name == "add_d6_l2_h3_t1500_s372001"
    assert ModelSpec.parse(spec.name) == spec
    with pytest.raises(ParseError, match="write t2K, not t2000"):
        ModelSpec.parse("add_d6_l2_h3_t2000_s372001")


def test_seed_with_leading_zero_round_trips():
    spec = ModelSpec.parse("add_d6_l2_h3_t15K_s012345")
    assert spec.seed == 12345 and spec.name == "add_d6_l2_h3_t15K_s012345"


def test_overriding_a_field_the_name_carries_is_refused():
    with pytest.raises(ArithLensError, match="'n_layers' is part of the model name"):
        ModelSpec.parse("add_d6_l2_h3_t15K_s372001", n_layers=3)
    with pytest.raises(ArithLensError, match="unknown ModelSpec field 'd_modle'"):
        ModelSpec.parse("add_d6_l2_h3_t15K_s372001", d_modle=3)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(n_layers=0), "n_layers 0 is outside >= 1"),
        (dict(d_head=2.5), "d_head must be an integer"),
        (dict(seed=1_000_000), "seed 1000000 is outside 0..999999"),
        (dict(op="div"), "operation 'div'"),
        (dict(op="add", perc_sub=50), "do not describe operation 'add'"),
        (dict(op="mix", perc_sub=100), "do not describe operation 'mix'"),
        (dict(op="mas", perc_sub=50, perc_mul=50), "do not describe operation 'mas'"),
        (dict(act_fn="gelu"), "act_fn 'gelu'"),
        (dict(grokfast=1), "grokfast must be True or False"),
        (dict(insert_mode=1, insert_name="nonsense"), "insert model name 'nonsense' is malformed"),
    ],
)
def test_invalid_specs_are_rejected_with_one_line_messages(fields, message):
    with pytest.raises(ArithLensError, match=message) as err:
        ModelSpec(**fields)
    assert "\n" not in str(err.value)


def test_spec_is_immutable():
    spec = ModelSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.n_layers = 5


def test_json_round_trip_keeps_every_field():
    spec = ModelSpec.parse(
        "ins1_mix_d6_l3_h4_t40K_s372001,add_d6_l2_h3_t15K_s372001", d_model=128, d_head=32, perc_sub=70
    )
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["name"] == spec.name and data["perc_sub"] == 70 and data["d_mlp"] == 512
    assert ModelSpec.from_dict(data) == spec


def test_from_dict_rejects_a_name_that_disagrees_with_the_fields():
    data = ModelSpec.parse("add_d6_l2_h3_t15K_s372001").to_dict()
    data["n_layers"] = 3
    with pytest.raises(ArithLensError, match="does not match its fields"):
        ModelSpec.from_dict(data)
    with pytest.raises(ArithLensError, match="unknown ModelSpec field 'colour'"):
        ModelSpec.from_dict({"colour": "red"})
