"""INV label processing with the offline Sentence-BERT model, scoring, merging, global explanations and the
``inv`` commands."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from inv_helpers import CLASSES, make_runs
from PIL import Image
from skimage import data

from p2pvision.cli import main
from p2pvision.inv.answers import Answer
from p2pvision.inv.global_explanation import build_global_explanation, write_global_explanation
from p2pvision.inv.labels import default_embedder, group_labels, normalise_label, score_labels
from p2pvision.inv.runs import find_runs
from p2pvision.label.store import AnswerStore


def test_labels_normalise_to_lemmas() -> None:
    assert normalise_label("  Whiskers! ") == "whisker"
    assert normalise_label("Striped   FUR,") == "striped fur" and normalise_label("Coffee Cups") == "coffee cup"
    assert normalise_label("“Eyes”") == "eye"


def test_sentence_bert_groups_labels_by_meaning_offline() -> None:
    vectors = default_embedder()(["cup", "mug", "fur"])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    labels = ["fur", "furry coat", "hair", "eye", "pupil", "iris", "cup", "mug", "coffee cup", "wheel", "tyre"]
    groups = group_labels(labels)
    together = [set(members) for members in groups.members]
    for expected in ({"fur", "furry coat", "hair"}, {"eye", "pupil", "iris"}, {"cup", "mug", "coffee cup"}):
        assert expected in together, groups.members
    assert groups.name_of("pupil") == "eye" and groups.name_of("mug") == "coffee cup"  # the most central member
    assert max(groups.silhouette, key=groups.silhouette.get) == len(groups.names)


def fake_embedder(texts):
    """Unit vectors by first letter: labels sharing one are the same concept (a stand-in where the meaning
    does not matter)."""
    vectors = np.zeros((len(texts), 26), dtype=np.float32)
    for row, text in enumerate(texts):
        vectors[row, ord(text[0]) - ord("a")] = 1.0
        vectors[row, (ord(text[-1]) - ord("a")) % 26] += 0.01
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_answer(task: str, step: int, guess: str, features: list[str], labeller: str = "ann", created=1.0) -> Answer:
    return Answer(str(uuid.uuid4()), labeller, task, step, guess, tuple(features), created)


def test_scores_follow_reveal_step_and_guess_correctness() -> None:
    answers = [
        make_answer("t1", 0, "cat", ["fur", "fluffy fur"]),  # one group named twice counts once: +1.0
        make_answer("t1", 3, "dog", ["fur"], labeller="bob"),  # wrong guess at step 3: +0.7 / 4
        make_answer("t1", 5, "cat", ["eye"], labeller="cyd"),  # +0.5
        make_answer("t2", 1, "not sure", ["eye"]),  # not sure counts as wrong: +0.9 / 4
        make_answer("t9", 0, "cat", ["eye"]),  # a task nobody asked about: ignored
    ]
    groups = group_labels(["fur", "fluffy fur", "eye"], fake_embedder)
    assert groups.names == ["fur", "eye"] or set(groups.names) == {"fluffy fur", "eye"} or groups.names
    fur = groups.name_of("fur")
    scores = score_labels(answers, {"t1": "cat", "t2": "cat"}, groups)
    assert scores["t1"] == pytest.approx({fur: 1.0 + 0.7 / 4, "eye": 0.5})
    assert scores["t2"] == pytest.approx({"eye": 0.9 / 4}) and "t9" not in scores


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs")
    make_runs(folder, {"chelsea": 0, "coffee": 1})
    return folder


def test_maps_sharing_a_best_label_merge_and_classes_aggregate_across_layers(runs: Path, tmp_path: Path) -> None:
    loaded = find_runs([runs])
    cat = next(run for run in loaded if run.record["name"] == "chelsea")
    layer = next(layer for layer in cat.record["layers"] if len([c for c in layer["clusters"] if c["kept"]]) >= 2)
    first, second = [c for c in layer["clusters"] if c["kept"]][:2]
    answers = [
        make_answer(first["task"], 0, "cat", ["whiskers"]),
        make_answer(second["task"], 1, "cat", ["whisker"], labeller="bob"),
        make_answer(second["task"], 4, "coffee", ["eye"], labeller="cyd"),
        make_answer(second["task"], 5, "cat", ["<script>window.pwned=1</script>"], labeller="bob", created=0.5),
    ]  # bob's earlier answer (created 0.5) is replaced by his later one
    explanation = build_global_explanation(loaded, answers, fake_embedder)
    assert explanation.answers_used == 3
    merged = [m for m in explanation.merged if m.image == "chelsea" and m.layer == layer["layer"]]
    assert len(merged) == 1 and merged[0].label == "whisker" and sorted(merged[0].clusters) == sorted(
        [first["cluster"], second["cluster"]]
    )
    assert merged[0].weight == pytest.approx(first["weight"] + second["weight"])
    assert merged[0].label_scores == pytest.approx({"whisker": 1.0 + 0.9, "eye": 0.6 / 4})
    arrays = cat.arrays()
    index = layer["index"]
    expected = (first["weight"] * arrays[f"L{index}_C{first['cluster']}_pixel"]
                + second["weight"] * arrays[f"L{index}_C{second['cluster']}_pixel"]) / merged[0].weight  # fmt: skip
    np.testing.assert_allclose(merged[0].pixel_map, expected, rtol=1e-5)
    shares = explanation.shares("cat")
    assert shares[layer["layer"]] == pytest.approx({"whisker": 1.9 / 2.05, "eye": 0.15 / 2.05})
    assert explanation.top_labels("cat") == ["whisker", "eye"] and explanation.layers == ["layer2", "layer3", "layer4"]
    paths = write_global_explanation(explanation, loaded, tmp_path / "global")
    record = json.loads(paths["json"].read_text())
    assert record["classes"]["cat"]["images"] == ["chelsea"] and record["answers_used"] == 3
    assert Image.open(paths["plot:cat"]).size[0] > 400


def test_inv_commands_explain_then_build_a_global_explanation(runs: Path, tmp_path: Path, capsys) -> None:
    photo = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).resize((80, 60)).save(photo)
    out = tmp_path / "maps"
    argv = ["inv", "explain", str(photo), str(photo), "--model", "test_resnet", "--weights", "none",
            "--layers", "layer3", "layer4", "--embedding", "pca", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "[2/2] coffee.png" in printed and "layer3:" in printed and f"label serve {out}" in printed
    assert sorted(p.name for p in out.iterdir()) == ["coffee", "coffee_1"]
    record = json.loads((out / "coffee" / "clustermaps.json").read_text())
    assert [layer["layer"] for layer in record["layers"]] == ["layer3", "layer4"] and record["image"] == str(photo)
    assert main(["inv", "explain", str(photo), "--model", "test_resnet", "--weights", "none", "--layers", "nope",
                 "--out", str(out)]) == 2  # fmt: skip
    assert "no layer 'nope'" in capsys.readouterr().err
    loaded = find_runs([runs])
    answers = []
    for number, run in enumerate(loaded):
        for layer in run.record["layers"]:
            for cluster in layer["clusters"]:
                if cluster["kept"]:
                    features = ["fur", "<b>ear</b>"] if number == 0 else ["cup", "foam"]
                    answers.append(make_answer(cluster["task"], layer["index"], CLASSES[number], features))
    db = tmp_path / "labels.sqlite"
    with AnswerStore(db) as store:
        for answer in answers:
            store.add(answer)
    assert main(["inv", "global", str(runs), "--db", str(db), "--out", str(tmp_path / "global")]) == 0
    printed = capsys.readouterr().out
    assert f"{len(answers)} answers used" in printed and "global explanation: " in printed
    page = (tmp_path / "global" / "index.html").read_text()
    assert "b&gt;ear&lt;/b" in page and "<b>" not in page and "ear</b" not in page  # text, escaped
    assert main(["inv", "global", str(runs), "--db", str(tmp_path / "none.sqlite")]) == 2
