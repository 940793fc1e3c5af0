"""The node study's "features" part: a dictionary on the node's output, its decisions in the verdict as data, and
the verdict's sentence citing them; without it the study is what it was."""

import arithlens as al
from arithlens.analysis.features.study import SAEOptions
from arithlens.analysis.node_study import StudyOptions, study_node
from arithlens.report.node_text import features_sentence

SMALL_STUDY = StudyOptions(questions=10, pairs=10, per_case=20, mixed=200, permutations=0, seed=3)
SMALL_SAE = SAEOptions(questions=600, eval_questions=200, steps=100, permutations=5, seed=3)


def test_the_study_with_features_cites_the_dictionary_and_keeps_the_rest():
    model = al.load_model()
    plain = study_node(model, "P18L0H3", SMALL_STUDY)
    with_features = study_node(model, "P18L0H3", SMALL_STUDY, features=SMALL_SAE)
    assert "features" not in plain.data and "features" not in plain.data["verdict"]
    data = with_features.data
    # everything the plain study decided is decided the same way (the dictionary runs after it, on its own seeds)
    for key in ("necessity", "sufficiency", "representation", "shared", "grid", "tags"):
        assert data[key] == plain.data[key]
    record = data["features"]
    assert record["features"]["digit"] == data["study_digit"]  # the dictionary is read at the study's digit
    found = data["verdict"]["features"]
    carry_borrow = record["features"]["carry_borrow"]
    assert set(found["carriers"]) == set(carry_borrow) == {"ADD", "SUB", "NEG"}
    assert found["carriers"] == {op: len(rec["carriers"]) for op, rec in carry_borrow.items()}
    assert found["operand_carriers"] == len(record["features"]["operand_carriers"])
    assert found["one_feature_for_carry_and_borrow"] == record["features"]["one_feature_for_carry_and_borrow"]
    comparison = record["features"]["comparison"]
    assert found["methods_agree"] == {op: c["encoding_agrees"] and c["use_agrees"] for op, c in comparison.items()}
    assert 0.0 <= found["explained_variance"] <= 1.0 and 0 < found["l0"] <= record["dictionary"]["k"]
    sentence = features_sentence(found)
    assert data["verdict"]["text"] == plain.data["verdict"]["text"] + " " + sentence
    assert f"SUB {found['carriers']['SUB']}" in sentence
    # the typed result keeps the part through its JSON round trip
    again = al.NodeStudy.from_dict(with_features.data)
    assert again.to_dict()["features"] == record


def test_features_sentence_says_where_the_methods_agree_and_disagree():
    found = {"carriers": {"ADD": 0, "SUB": 2, "NEG": 1}, "operand_carriers": 9,
             "one_feature_for_carry_and_borrow": False, "methods_agree": {"ADD": False, "SUB": True, "NEG": True},
             "explained_variance": 0.9989, "l0": 4.0}
    text = features_sentence(found)
    assert "ADD 0, SUB 2, NEG 1" in text and "9 carry an operand digit" in text
    assert "at once: no" in text and "agree for SUB/NEG, disagree for ADD" in text
    assert "99.9%" in text and "L0 4.0" in text
