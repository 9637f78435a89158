"""A generated sweep of bad inputs across every command: malformed files, configs, checkpoints, paths, numbers,
names and signals. Each case runs the real CLI in-process (``p2pvision.cli.main``) and asserts that there is no
traceback, that the error is one ``p2pvision: error:`` line naming the bad input, that the exit code is the
documented one (2: bad usage or input, nothing written; 1: some of many inputs failed, the others have their full
output; 130/143: interrupted/terminated), and that no hidden, partial or stray file is left anywhere.

Every input is generated here (nothing is committed); nothing downloads; training, benchmarking and serving fail
the test at once if a bad value gets that far.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import signal
import socketserver
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from inv_helpers import make_runs
from PIL import Image
from safetensors.torch import load_file, save_file

from p2pvision.cli import main
from p2pvision.models.backbones import create_classifier, save_classifier
from p2pvision.models.p2p import P2PConfig, P2PModel, save_p2p

ROOT = os.geteuid() == 0  # root reads and writes whatever the permission bits say
TINY = {"num_classes": 4, "image_size": 32, "classifier": "test_resnet", "selector_backbone": "test_resnet",
        "selector_levels": (1, 2), "head_channels": 8, "max_regions": 16,
        "partition": {"name": "grid", "grid": 4}}  # fmt: skip
TRAINED_ON = {"data": {"source": "semisynthetic", "image_size": 32, "n_train": 8, "n_val": 8, "n_test": 8}}
GOOD_TRAIN = {"name": "tiny", "data": TRAINED_ON["data"], "train": {"epochs": 1, "batch_size": 4}}
SEMI = ["--size", "32", "--n", "10"]  # were a bad value accepted, the work would still be small


# ---------------------------------------------------------------------------------------------------------------------
# The inputs: generated once per module in one folder (``env.root``), which no case may change.


class Env(dict):
    """Named input paths (as text, for the argv templates) under ``root``."""

    root: Path


def _png(path: Path, size: tuple[int, int] = (32, 40), seed: int = 0) -> Path:
    pixels = (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _bad_files(env: Env, kind: str, good: bytes) -> None:
    """The bad files every file argument is tried with, as ``<kind>_<class>``: missing, a folder, a symbolic link
    loop, a link to a missing file, a FIFO, an unreadable file, an empty file, random bytes, a truncated file."""
    folder = env.root / kind
    folder.mkdir()
    env[f"{kind}_missing"] = str(folder / f"missing.{kind}")
    (folder / f"folder.{kind}").mkdir()
    env[f"{kind}_folder"] = str(folder / f"folder.{kind}")
    os.symlink(f"loop.{kind}", folder / f"loop.{kind}")
    env[f"{kind}_loop"] = str(folder / f"loop.{kind}")
    os.symlink("nowhere", folder / f"broken.{kind}")
    env[f"{kind}_broken"] = str(folder / f"broken.{kind}")
    os.mkfifo(folder / f"fifo.{kind}")
    env[f"{kind}_fifo"] = str(folder / f"fifo.{kind}")
    (folder / f"locked.{kind}").write_bytes(good)
    (folder / f"locked.{kind}").chmod(0)
    env[f"{kind}_locked"] = str(folder / f"locked.{kind}")
    (folder / f"empty.{kind}").write_bytes(b"")
    env[f"{kind}_empty"] = str(folder / f"empty.{kind}")
    (folder / f"garbled.{kind}").write_bytes(np.random.default_rng(1).bytes(3000))
    env[f"{kind}_garbled"] = str(folder / f"garbled.{kind}")
    (folder / f"truncated.{kind}").write_bytes(good[: max(1, len(good) // 3)])
    env[f"{kind}_truncated"] = str(folder / f"truncated.{kind}")


PATH_CLASSES = ["missing", "folder", "loop", "broken", "fifo", "locked"]  # whatever the file should hold
FILE_CLASSES = [*PATH_CLASSES, "empty", "garbled", "truncated"]


def _checkpoints(env: Env, good: Path) -> None:
    """Broken copies of the good P2P checkpoint, as ``ckpt_<class>``."""
    folder = env.root / "checkpoints"
    folder.mkdir()

    def copy(name: str) -> Path:
        target = folder / name
        shutil.copytree(good, target)
        env[f"ckpt_{name}"] = str(target)
        return target

    weights, config = "model.safetensors", "config.json"
    meta = json.loads((good / config).read_text())
    copy("truncated_weights").joinpath(weights).write_bytes((good / weights).read_bytes()[:700])
    copy("empty_weights").joinpath(weights).write_bytes(b"")
    copy("garbled_weights").joinpath(weights).write_bytes(np.random.default_rng(2).bytes(4000))
    copy("text_weights").joinpath(weights).write_text("not weights at all")
    copy("no_weights").joinpath(weights).unlink()
    copy("no_config").joinpath(config).unlink()
    copy("config_list").joinpath(config).write_text("[1, 2]")
    copy("config_not_json").joinpath(config).write_text("{oops")
    copy("config_empty").joinpath(config).write_text("")
    copy("config_not_utf8").joinpath(config).write_bytes(b'{"format": "\xff\xfe"}')
    copy("config_wrong_format").joinpath(config).write_text(json.dumps({**meta, "format": "something-else"}))
    copy("config_version_99").joinpath(config).write_text(json.dumps({**meta, "format_version": 99}))
    copy("config_section_text").joinpath(config).write_text(json.dumps({**meta, "config": "fast"}))
    settings = {k: v for k, v in meta["config"].items() if k != "num_classes"}
    copy("config_missing_key").joinpath(config).write_text(json.dumps({**meta, "config": settings}))
    for name, key, value in (("image_size_0", "image_size", 0), ("image_size_text", "image_size", "big"),
                             ("max_regions_negative", "max_regions", -4), ("wrong_shapes", "head_channels", 16),
                             ("unknown_backbone", "classifier", "no_such_net")):  # fmt: skip
        copy(name).joinpath(config).write_text(json.dumps({**meta, "config": {**meta["config"], key: value}}))
    tensors = load_file(str(good / weights))
    floating = next(key for key, value in tensors.items() if value.is_floating_point())
    for name, value in (("nan_weights", math.nan), ("inf_weights", math.inf)):
        target = copy(name)
        save_file({**tensors, floating: torch.full_like(tensors[floating], value)}, str(target / weights),
                  metadata={"format": "p2pvision-p2p", "format_version": "1"})  # fmt: skip
    copy("config_folder").joinpath(config).unlink()
    (folder / "config_folder" / config).mkdir()
    os.mkfifo(copy("fifo_weights").joinpath(weights).with_name("fifo"))
    (folder / "fifo_weights" / weights).unlink()
    (folder / "fifo_weights" / "fifo").rename(folder / "fifo_weights" / weights)
    (folder / "empty_folder").mkdir()
    env["ckpt_empty_folder"] = str(folder / "empty_folder")
    env["ckpt_missing"] = str(folder / "missing")
    os.symlink("loop", folder / "loop")
    env["ckpt_loop"] = str(folder / "loop")
    (folder / "a_file").write_text("not a checkpoint")
    env["ckpt_a_file"] = str(folder / "a_file")


CHECKPOINT_CLASSES = [
    "truncated_weights", "empty_weights", "garbled_weights", "text_weights", "no_weights", "no_config", "config_list",
    "config_not_json", "config_empty", "config_not_utf8", "config_wrong_format", "config_version_99",
    "config_section_text", "config_missing_key", "image_size_0", "image_size_text", "max_regions_negative",
    "wrong_shapes", "unknown_backbone", "nan_weights", "inf_weights", "config_folder", "fifo_weights",
    "empty_folder", "missing", "loop", "a_file",
]  # fmt: skip


def _runs(env: Env) -> None:
    """A good cluster-map folder (``runs``) and broken copies (``runs_<class>``)."""
    good = env.root / "runs" / "chelsea"
    make_runs(env.root / "runs", {"chelsea": 0}, size=48)
    env["runs"] = str(good)
    record = json.loads((good / "clustermaps.json").read_text())
    folder = env.root / "broken_runs"
    folder.mkdir()

    def copy(name: str, text: str | None = None) -> Path:
        target = folder / name
        shutil.copytree(good, target)
        if text is not None:
            (target / "clustermaps.json").write_text(text)
        env[f"runs_{name}"] = str(target)
        return target

    copy("not_json", "{oops")
    copy("a_list", "[1, 2]")
    copy("empty_record", "")
    copy("wrong_format", json.dumps({**record, "format": "other"}))
    copy("no_layers", json.dumps({k: v for k, v in record.items() if k != "layers"}))
    copy("layers_text", json.dumps({**record, "layers": "many"}))
    escaping = json.loads(json.dumps(record))
    kept = next(c for layer in escaping["layers"] for c in layer["clusters"] if c["kept"])
    kept["reveal"][0] = "../../../../../../../../etc/passwd"
    copy("reveal_outside", json.dumps(escaping))
    kept["reveal"][0] = "/etc/passwd"
    copy("reveal_absolute", json.dumps(escaping))
    copy("no_reveal_images")
    shutil.rmtree(folder / "no_reveal_images" / "reveal")
    copy("not_utf8").joinpath("clustermaps.json").write_bytes(b"\xff\xfe{}")
    copy("no_image").joinpath("image.png").unlink()
    copy("garbled_image").joinpath("image.png").write_bytes(np.random.default_rng(4).bytes(500))
    (folder / "empty").mkdir()
    env["runs_empty"] = str(folder / "empty")
    env["runs_missing"] = str(folder / "missing")
    os.symlink("loop", folder / "loop")
    env["runs_loop"] = str(folder / "loop")
    (folder / "a_file").write_text("not a folder")
    env["runs_a_file"] = str(folder / "a_file")


RUNS_CLASSES = ["not_json", "a_list", "empty_record", "wrong_format", "no_layers", "layers_text", "reveal_outside",
                "reveal_absolute", "no_reveal_images", "not_utf8", "empty", "missing", "loop", "a_file"]  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    env = Env()
    env.root = tmp_path_factory.mktemp("sweep-inputs")
    env["img"] = str(_png(env.root / "good.png"))
    env["img2"] = str(_png(env.root / "good2.png", seed=3))
    _bad_files(env, "png", Path(env["img"]).read_bytes())
    (env.root / "png" / "text.png").write_text("this is not an image\n")
    env["png_text"] = str(env.root / "png" / "text.png")
    (env.root / "png" / "pdf.png").write_bytes(b"%PDF-1.4\n" + b"0" * 100)
    env["png_pdf"] = str(env.root / "png" / "pdf.png")

    torch.manual_seed(0)
    env["ckpt"] = str(save_p2p(P2PModel(P2PConfig(**TINY)), env.root / "ckpt", extra={"experiment": TRAINED_ON}))
    env["ckpt_no_data"] = str(save_p2p(P2PModel(P2PConfig(**TINY)), env.root / "ckpt_no_data"))
    _checkpoints(env, Path(env["ckpt"]))
    classifier = create_classifier("test_resnet", num_classes=4, class_names=["a", "b", "c", "d"])
    weights = save_classifier(classifier, "test_resnet", env.root / "classifier") / "model.safetensors"
    _bad_files(env, "safetensors", weights.read_bytes())

    yaml_text = yaml.safe_dump(GOOD_TRAIN).encode()
    _bad_files(env, "yaml", yaml_text)
    configs = {
        "malformed": "train: {epochs: [1, 2\n",
        "a_list": "- 1\n- 2\n",
        "a_scalar": "hello\n",
        "tabs": "train:\n\tepochs: 3\n",
        "section_text": "name: x\ntrain: fast\n",
        "unknown_top": "trian: {epochs: 1}\n",
        "unknown_key": "train: {epoch: 3}\n",
        "wrong_type": "train: {epochs: abc}\n",
        "negative": "train: {epochs: -1}\n",
        "nan": "train: {lr: .nan}\n",
        "inf": "train: {lr: .inf}\n",
        "huge_int": "data: {image_size: " + "9" * 400 + "}\n",
        "bad_source": "data: {source: imagenot}\n",
        "bad_partition": "model: {partition: {name: hexagons}}\n",
        "image_size_0": "data: {image_size: 0}\n",
        "duplicate_anchor": "a: &x 1\nb: *y\n",
        "python_tag": "!!python/object/apply:os.system ['echo pwned']\n",
    }
    for name, text in configs.items():
        (env.root / "yaml" / f"{name}.yaml").write_text(text)
        env[f"yaml_{name}"] = str(env.root / "yaml" / f"{name}.yaml")
    (env.root / "yaml" / "not_utf8.yaml").write_bytes(b"name: caf\xe9\n")
    env["yaml_not_utf8"] = str(env.root / "yaml" / "not_utf8.yaml")

    header = "answer_id,labeller,task_id,image,layer,cluster,target_name,reveal_step,reveal_percent,guess,correct," \
             "features,created\n"  # fmt: skip
    (env.root / "answers.csv").write_text(header)
    env["csv_good"] = str(env.root / "answers.csv")
    _bad_files(env, "csv", header.encode() + b"a,ann,t-L0-C1,x,l,1,cat,0,2,cat,1,[],1.0\n" * 4)
    (env.root / "csv" / "no_header.csv").write_text("just,some,columns\n1,2,3\n")
    env["csv_no_header"] = str(env.root / "csv" / "no_header.csv")
    (env.root / "csv" / "huge_field.csv").write_text(header + "x" * 200_000 + "\n")
    env["csv_huge_field"] = str(env.root / "csv" / "huge_field.csv")
    (env.root / "csv" / "not_utf8.csv").write_bytes(header.encode() + "caf\xe9,".encode("latin-1") * 13 + b"\n")
    env["csv_not_utf8"] = str(env.root / "csv" / "not_utf8.csv")
    (env.root / "csv" / "nul_bytes.csv").write_bytes(header.encode() + b"\x00" * 50 + b"\n")
    env["csv_nul_bytes"] = str(env.root / "csv" / "nul_bytes.csv")
    row = '{id},ann,t-L0-C1,x,l,1,cat,0,2,cat,1,"[""fur""]",{created}\n'
    ids = [f"0f8fad5b-d9cb-469f-a165-70867728950{number}" for number in range(3)]
    for name, created in (("nan_times", "nan"), ("inf_times", "inf")):
        (env.root / "csv" / f"{name}.csv").write_text(header + row.format(id=ids[0], created=created))
        env[f"csv_{name}"] = str(env.root / "csv" / f"{name}.csv")
    rows = [row.format(id=ids[0], created="1.5"), row.format(id=ids[1], created="nan"),
            row.format(id=ids[2], created="-1")]  # fmt: skip
    (env.root / "csv" / "mixed.csv").write_text(header + "".join(rows))
    env["csv_mixed"] = str(env.root / "csv" / "mixed.csv")

    _bad_files(env, "sqlite", b"SQLite format 3\x00" + bytes(200))
    _runs(env)
    _data_sets(env)
    return env


def _data_sets(env: Env) -> None:
    """Local data-set folders for ``data inspect``: a good ImageFolder and broken ones, as ``data_<class>``."""
    root = env.root / "data"
    for name in ("good", "empty_class", "bad_mask_size", "no_classes", "only_files"):
        (root / name).mkdir(parents=True)
    for label in ("cat", "dog"):
        (root / "good" / label).mkdir()
        _png(root / "good" / label / "a.png")
    env["data_good"] = str(root / "good")
    (root / "empty_class" / "cat").mkdir()
    _png(root / "empty_class" / "cat" / "a.png")
    (root / "empty_class" / "dog").mkdir()
    env["data_empty_class"] = str(root / "empty_class")
    (root / "only_files" / "a.png").write_bytes(Path(env["img"]).read_bytes())
    env["data_only_files"] = str(root / "only_files")
    env["data_no_classes"] = str(root / "no_classes")
    masks = root / "masks"
    (masks / "cat").mkdir(parents=True)
    (masks / "dog").mkdir(parents=True)
    for label in ("cat", "dog"):
        Image.fromarray(np.zeros((32, 40), np.uint8)).save(masks / label / "a.png")
    env["masks_good"] = str(masks)
    wrong = root / "masks_wrong"
    shutil.copytree(masks, wrong)
    Image.fromarray(np.zeros((17, 9), np.uint8)).save(wrong / "cat" / "a.png")
    env["masks_wrong_size"] = str(wrong)
    env["data_missing"] = str(root / "missing")
    os.symlink("loop", root / "loop")
    env["data_loop"] = str(root / "loop")
    (root / "a_file").write_text("not a folder")
    env["data_a_file"] = str(root / "a_file")
    _crafted_data_sets(env, root)


class _RunsCode:
    """Unpickles as a call of os.system: what a crafted data file does (the marker must never appear)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted_data_sets(env: Env, root: Path) -> None:
    """Data sets whose files would run code if unpickled, or name files outside their folder."""
    marker = env.root / "PWNED"  # inside the inputs: the check that the inputs are unchanged catches it
    cifar = root / "cifar_crafted" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    (cifar / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"] * 10, b"num_vis": 3072}))
    (cifar / "test_batch").write_bytes(pickle.dumps({b"data": _RunsCode(marker), b"labels": [1]}))
    env["cifar_crafted"] = str(root / "cifar_crafted")
    env["cifar_crafted_batch"] = str(cifar / "test_batch")
    garbled = root / "cifar_garbled" / "cifar-10-batches-py"
    shutil.copytree(cifar, garbled)
    (garbled / "test_batch").write_bytes(np.random.default_rng(5).bytes(2000))
    env["cifar_garbled"] = str(root / "cifar_garbled")
    for name in ("bam_crafted", "bam_outside"):
        base = root / name / "obj"
        (base / "val").mkdir(parents=True)
        _png(base / "val" / "dog-bedroom-0901.jpg.png")
        (base / "val" / "dog-bedroom-0901.jpg.png").rename(base / "val" / "dog-bedroom-0901.jpg")
        (base / "val.txt").write_text("dog-bedroom-0901.jpg 2\n")
        (base / "val_loc.txt").write_text("dog-bedroom-0901.jpg 2,4,6,12\n")
        masks = np.empty(1000, dtype=object)
        masks[:] = [np.zeros((2, 2), dtype=np.uint8)] * 1000
        if name == "bam_crafted":
            masks[5] = _RunsCode(marker)
        else:
            (base / "val.txt").write_text("../../../../good.png 2\n")
        with (base / "val_mask").open("wb") as handle:
            np.save(handle, masks, allow_pickle=True)
        env[name] = str(root / name)


# ---------------------------------------------------------------------------------------------------------------------
# The cases.


@dataclass
class Case:
    """``argv`` and the tokens that must appear in the error line are templates over the input names and ``out``
    (the output folder), ``file`` (an existing file that must stay as it is) and ``ro`` (a read-only folder)."""

    id: str
    argv: list[str]
    names: list[str]
    code: int = 2
    failed: int = 1  # error lines expected (code 1: one per failed input)
    check: Callable[[Path], None] | None = None  # what the good inputs must have produced (code 1)
    phrases: tuple[str, ...] = ()  # the error line says what is wrong: one of these (any case)
    as_root: bool = True  # whether root sees the input as bad (else os.access answers as for a user)
    guard: bool = True  # training, benchmarking and serving fail the test (off: the refusal comes from within)


CASES: list[Case] = []


def case(id: str, argv: str | list[str], *names: str, **options) -> None:
    CASES.append(Case(id, argv.split() if isinstance(argv, str) else argv, list(names), **options))


def _needs_user(kind_class: str) -> bool:
    return not kind_class.endswith("locked")


# What an error line must say for each kind of unusable path (not, say, 'does not exist' for a link loop).
SAYS = {"missing": ("does not exist", "not found"), "folder": ("folder", "directory"), "loop": ("loop",),
        "broken": ("link",), "fifo": ("pipe", "regular file"), "locked": ("permission",)}  # fmt: skip


def file_cases(prefix: str, kind: str, classes: list[str], argv: str, **options) -> None:
    """One case per bad-file class of ``kind``: ``argv`` holds ``{bad}`` where the file goes."""
    for name in classes:
        key = f"{kind}_{name}"
        case(f"{prefix}-{name}", argv.replace("{bad}", "{" + key + "}"), "{" + key + "}",
             as_root=_needs_user(key), phrases=SAYS.get(name, ()), **options)  # fmt: skip


# Images: every command that reads image files, alone (exit 2) and among good ones (exit 1, the good ones' output).
IMAGE_CLASSES = [*FILE_CLASSES, "text", "pdf"]
EXPLAIN = "--method grad_cam --model test_resnet --weights none --formats png --out {out}"
INV = "--model test_resnet --weights none --embedding pca --out {out}"
for image in IMAGE_CLASSES:
    key, extra = "{png_" + image + "}", {"as_root": _needs_user(image), "phrases": SAYS.get(image, ())}
    case(f"predict-image-{image}", f"predict {{ckpt}} {key} --out {{out}}", key, **extra)
    case(f"explain-image-{image}", f"explain {key} {EXPLAIN}", key, **extra)
    case(f"inv-explain-image-{image}", f"inv explain {key} {INV}", key, **extra)


def _predicted(names: list[str]) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        records = json.loads((out / "predictions.json").read_text())
        assert [Path(record["file"]).name for record in records] == names
        assert all(Path(record["figure"]).is_file() for record in records)

    return check


def _explained(stems: list[str]) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        assert {path.name.split(".")[0] for path in out.iterdir()} == set(stems)  # nothing for the bad files
        for stem in stems:
            assert json.loads((out / f"{stem}.grad_cam.json").read_text())["scores"]
            assert (out / f"{stem}.grad_cam.png").is_file()

    return check


def _mapped(stems: list[str]) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        assert sorted(path.name for path in out.iterdir()) == sorted(stems)
        for stem in stems:
            assert json.loads((out / stem / "clustermaps.json").read_text())["layers"]

    return check


ALL_BAD = [f"{{png_{name}}}" for name in IMAGE_CLASSES if name != "locked" or not ROOT]
MIXED = ["{img}", *ALL_BAD, "{img2}"]
case(
    "predict-mixed",
    ["predict", "{ckpt}", *MIXED, "--out", "{out}", "--tau", "0.5"],
    *ALL_BAD,
    code=1,
    failed=len(ALL_BAD),
    check=_predicted(["good.png", "good2.png"]),
)  # a fixed tau: no search, quicker
case(
    "explain-mixed",
    ["explain", *MIXED, *EXPLAIN.split()],
    *ALL_BAD,
    code=1,
    failed=len(ALL_BAD),
    check=_explained(["good", "good2"]),
)
case(
    "inv-explain-mixed",
    ["inv", "explain", "{png_truncated}", "{img}", "{png_fifo}", "{png_loop}", *INV.split()],
    "{png_truncated}",
    "{png_fifo}",
    "{png_loop}",
    code=1,
    failed=3,
    check=_mapped(["good"]),
)

# Checkpoints: every command that loads one.
CHECKPOINT_SAYS = {"missing": SAYS["missing"], "loop": SAYS["loop"], "config_folder": SAYS["folder"],
                   "fifo_weights": SAYS["fifo"], "nan_weights": ("nan",), "inf_weights": ("infinite",),
                   "truncated_weights": ("truncated",), "empty_weights": ("truncated",),
                   "config_not_json": ("json",), "config_list": ("list",), "image_size_0": ("image_size",),
                   "config_missing_key": ("num_classes",), "unknown_backbone": ("no_such_net",)}  # fmt: skip
SOME_CHECKPOINTS = [
    "missing",
    "loop",
    "fifo_weights",
    "truncated_weights",
    "config_list",
    "image_size_0",
    "unknown_backbone",
    "nan_weights",
]  # explain and inv explain load them as predict does
for broken in CHECKPOINT_CLASSES:
    key, says = "{ckpt_" + broken + "}", CHECKPOINT_SAYS.get(broken, ())
    case(f"predict-ckpt-{broken}", f"predict {key} {{img}} --out {{out}}", key, phrases=says)
    case(f"evaluate-ckpt-{broken}", f"evaluate {key} --out {{out}}", key, phrases=says)
    if broken in SOME_CHECKPOINTS:
        case(f"explain-ckpt-{broken}", f"explain {{img}} --method grad_cam --checkpoint {key} --out {{out}}", key,
             phrases=says)  # fmt: skip
        case(f"inv-explain-ckpt-{broken}", f"inv explain {{img}} --checkpoint {key} --embedding pca --out {{out}}",
             key, phrases=says)  # fmt: skip
case("evaluate-ckpt-without-data", "evaluate {ckpt_no_data} --out {out}", "{ckpt_no_data}", "--data")

# Classifier weights files (explain --weights, inv explain --weights).
for name in [*FILE_CLASSES, "unknown_word"]:
    key = "{safetensors_" + name + "}" if name != "unknown_word" else "bogus"
    for command, options in (("explain", "--method grad_cam --out {out}"), ("inv explain", "--out {out}")):
        case(f"{command.replace(' ', '-')}-weights-{name}",
             f"{command} {{img}} --model test_resnet --weights {key} {options}", key,
             as_root=_needs_user(name), phrases=SAYS.get(name, ()))  # fmt: skip

# Configs: train, benchmark and demo read YAML files; train and benchmark take key=value overrides.
YAML_FILE_CLASSES = [name for name in FILE_CLASSES if name != "empty"]  # an empty config means the defaults
YAML_CONTENT = {
    "malformed": "{yaml_malformed}", "a_list": "{yaml_a_list}", "a_scalar": "{yaml_a_scalar}", "tabs": "{yaml_tabs}",
    "section_text": "train", "unknown_top": "trian", "unknown_key": "epoch", "wrong_type": "train.epochs",
    "negative": "train.epochs", "nan": "train.lr", "inf": "train.lr", "huge_int": "data.image_size",
    "bad_source": "imagenot", "bad_partition": "hexagons", "image_size_0": "data.image_size",
    "duplicate_anchor": "{yaml_duplicate_anchor}", "python_tag": "{yaml_python_tag}", "not_utf8": "{yaml_not_utf8}",
}  # fmt: skip
for command in ("train", "demo"):
    out = "--out {out}"
    file_cases(f"{command}-config", "yaml", YAML_FILE_CLASSES, f"{command} --config {{bad}} {out}")
    for name, token in YAML_CONTENT.items():
        case(f"{command}-config-{name}", f"{command} --config {{yaml_{name}}} {out}", token)
    case(f"{command}-config-unknown-name", f"{command} --config demmo {out}", "demmo")
file_cases("benchmark-config", "yaml", YAML_FILE_CLASSES, "benchmark --config {bad} --out {out}")
for name in ("malformed", "a_list", "a_scalar", "tabs", "not_utf8", "python_tag", "duplicate_anchor"):
    case(f"benchmark-config-{name}", f"benchmark --config {{yaml_{name}}} --out {{out}}", f"{{yaml_{name}}}")
case("benchmark-config-unknown-name", "benchmark --config cpuu --out {out}", "cpuu")

TRAIN_OVERRIDES = {
    "no-equals": ("train.epochs", "train.epochs"), "no-key": ("=3", "=3"), "empty-value": ("train.epochs=", "epochs"),
    "unknown-section": ("trian.epochs=3", "trian"), "unknown-key": ("train.epoch=3", "epoch"),
    "section-as-value": ("train=fast", "train"), "text-for-int": ("train.epochs=abc", "train.epochs"),
    "negative-epochs": ("train.epochs=-1", "train.epochs"), "zero-batch": ("train.batch_size=0", "train.batch_size"),
    "nan-lr": ("train.lr=nan", "train.lr"), "inf-lr": ("train.lr=inf", "train.lr"),
    "negative-lr": ("train.lr=-0.1", "train.lr"), "float-epochs": ("train.epochs=1.5", "train.epochs"),
    "bool-epochs": ("train.epochs=true", "train.epochs"), "list-epochs": ("train.epochs=[1]", "train.epochs"),
    "huge-size": ("data.image_size=" + "9" * 400, "data.image_size"), "bad-yaml": ("train.epochs=[1", "train.epochs"),
    "image-size-0": ("data.image_size=0", "data.image_size"), "bad-source": ("data.source=imagenot", "imagenot"),
    "bad-partition": ("model.partition.name=hexagons", "hexagons"),
    "max-regions-0": ("model.max_regions=0", "model.max_regions"),
    "bad-mode": ("train.mode=fastest", "train.mode"), "warmup-past-epochs": ("train.warmup_epochs=-2", "warmup"),
    "bad-root": ("data.root=[1, 2]", "data.root"), "bad-crop": ("data.crop_scale=[2, 1]", "data.crop_scale"),
}  # fmt: skip
for name, (override, token) in TRAIN_OVERRIDES.items():
    case(f"train-override-{name}", ["train", override, "--out", "{out}"], token)
    if name in ("unknown-key", "text-for-int", "nan-lr", "bad-source", "huge-size"):  # over a config file too
        case(f"train-config-and-override-{name}", ["train", "--config", "demo", override, "--out", "{out}"], token)
BENCHMARK_OVERRIDES = {
    "no-equals": ("seeds", "seeds"), "seeds-text": ("seeds=abc", "seeds"), "seeds-negative": ("seeds=[-1]", "seeds"),
    "batch-size-0": ("batch_size=0", "batch_size"), "batch-size-nan": ("batch_size=nan", "batch_size"),
    "unknown-key": ("seed=[0]", "seed"), "methods-text": ("methods=fast", "methods"),
    "datasets-text": ("datasets=many", "datasets"), "metrics-unknown": ("metrics=[acuracy]", "acuracy"),
    "examples-negative": ("examples=-1", "examples"), "bad-yaml": ("seeds=[0", "seeds"),
}  # fmt: skip
for name, (override, token) in BENCHMARK_OVERRIDES.items():
    case(f"benchmark-override-{name}", ["benchmark", "--config", "cpu", override, "--out", "{out}"], token)
case("benchmark-unknown-dataset", "benchmark --config cpu --datasets objekt --out {out}", "objekt")

# Numbers: every numeric option, with text, nan, inf, out-of-range, negative, zero and fractional values.
NOT_NUMBERS = ["abc", "nan", "inf", "-inf", "1e999", "0x10"]
NUMBERS = {
    "predict --delta": ("predict {ckpt} {img} --out {out} --delta", ["0", "1", "5", "-0.5", *NOT_NUMBERS]),
    "predict --tau": ("predict {ckpt} {img} --out {out} --tau", ["0", "1.5", "-1", *NOT_NUMBERS]),
    "evaluate --delta": ("evaluate {ckpt} --out {out} --delta 0.9", ["1", "0", "2", *NOT_NUMBERS]),
    "evaluate --batch-size": ("evaluate {ckpt} --out {out} --batch-size", ["0", "-4", "1.5", *NOT_NUMBERS]),
    "evaluate --images": ("evaluate {ckpt} --out {out} --images", ["0", "-1", "2.5", *NOT_NUMBERS]),
    "explain --grid": (f"explain {{img}} {EXPLAIN} --grid", ["0", "-2", "2.5", *NOT_NUMBERS]),
    "explain --superpixels": (f"explain {{img}} {EXPLAIN} --superpixels", ["0", "-5", *NOT_NUMBERS]),
    "explain --batch-size": (f"explain {{img}} {EXPLAIN} --batch-size", ["0", "-1", *NOT_NUMBERS]),
    "explain --target": (f"explain {{img}} {EXPLAIN} --target", ["-3", "1.5", "5000", *NOT_NUMBERS]),
    "explain --checkpoint --target": (
        "explain {img} --method grad_cam --checkpoint {ckpt} --out {out} --target",
        ["4", "99"],
    ),
    "inv explain --target": (f"inv explain {{img}} {INV} --target", ["-1", "5000", "abc"]),
    "inv explain --seed": (f"inv explain {{img}} {INV} --seed", ["-1", "1.5", "abc"]),
    "data semisynthetic --size": ("data semisynthetic --n 10 --size", ["0", "-64", "7.5", *NOT_NUMBERS]),
    "data semisynthetic --n": ("data semisynthetic --size 32 --n", ["0", "-10", *NOT_NUMBERS]),
    "data semisynthetic --n-train": ("data semisynthetic --size 32 --n 10 --n-train", ["0", "-1", "abc"]),
    "data semisynthetic --seed": ("data semisynthetic --size 32 --n 10 --seed", ["-1", "abc"]),
    "data export --n-test": ("data export --size 32 --n 10 --out {out} --n-test", ["0", "nan"]),
    "data sheet --count": ("data sheet --size 32 --n 10 --out {out}/s.png --count", ["0", "-4", "abc"]),
    "data inspect --sample": ("data inspect imagefolder {data_good} --sample", ["0", "-3", "abc", "inf"]),
    "label serve --port": ("label serve {runs} --db {out}/a.sqlite --port", ["70000", "-1", "abc", "8080.5"]),
}
for option, (argv, values) in NUMBERS.items():
    for value in values:
        case(f"{option.replace(' ', '')}={value}", [*argv.split(), value], value)
SCALES = [["nan", "0.5"], ["0.5", "inf"], ["-1", "0.5"], ["0", "0.5"], ["0.6", "0.5"], ["0.5", "2"], ["a", "b"]]
for low, high in SCALES:
    for action in ("semisynthetic", "export --out {out}", "sheet --out {out}/s.png"):
        name = action.split()[0]
        case(f"data-{name}-scale={low},{high}", f"data {action} --size 32 --n 10 --scale {low} {high}".split(),
             "--scale")  # fmt: skip

# Explainer parameters (--param) and the names of methods, removals, models, devices, layers, formats.
PARAMS = {
    "no-equals": ("lime", "num_samples", "num_samples"), "empty-key": ("lime", "=3", "=3"),
    "unknown": ("lime", "num_sample=10", "num_sample"), "text": ("lime", "num_samples=abc", "num_samples"),
    "negative": ("lime", "num_samples=-1", "num_samples"), "nan": ("rise", "keep_probability=nan", "keep_probability"),
    "above-one": ("rise", "keep_probability=1.5", "keep_probability"), "inf": ("rise", "num_masks=inf", "num_masks"),
    "bad-yaml": ("lime", "num_samples=[1", "num_samples"), "list": ("lime", "num_samples=[1, 2]", "num_samples"),
    "mapping": ("shapley", "num_permutations={a: 1}", "num_permutations"),
}  # fmt: skip
for name, (method, param, token) in PARAMS.items():
    case(f"explain-param-{name}", f"explain {{img}} --method {method} --model test_resnet --weights none "
         f"--param {param} --out {{out}}", token)  # fmt: skip
NAMES = {
    "explain-method": (f"explain {{img}} {EXPLAIN.replace('grad_cam', 'gradcm')}", "gradcm"),
    "explain-removal": (f"explain {{img}} --method lime --removal meen {EXPLAIN.split(maxsplit=2)[2]}", "meen"),
    "explain-removal-for-gradients": (f"explain {{img}} {EXPLAIN} --removal mean", "--removal"),
    "explain-model": (
        "explain {img} --method grad_cam --model test_resnett --weights none --out {out}",
        "test_resnett",
    ),
    "explain-model-without-weights": ("explain {img} --method grad_cam --model test_resnet --out {out}", "--weights"),
    "explain-hub-offline": ("explain {img} --method grad_cam --model test_resnet --weights hub --out {out}", "hub"),
    "explain-package-missing": (
        "explain {img} --method grad_cam --model test_resnet --weights package --out {out}",
        "test_resnet",
    ),
    "explain-device-cuda": (f"explain {{img}} {EXPLAIN} --device cuda:7", "cuda:7"),
    "explain-device-toaster": (f"explain {{img}} {EXPLAIN} --device toaster", "toaster"),
    "explain-device-meta": (f"explain {{img}} {EXPLAIN} --device meta", "meta"),
    "explain-grid-and-superpixels": (f"explain {{img}} {EXPLAIN} --grid 4 --superpixels 10", "--superpixels"),
    "inv-explain-layers": (f"inv explain {{img}} {INV} --layers layer9", "layer9"),
    "inv-explain-embedding": (f"inv explain {{img}} {INV} --embedding tsen", "tsen"),
    "inv-explain-device": (f"inv explain {{img}} {INV} --device cuda:9", "cuda:9"),
    "inv-explain-model": ("inv explain {img} --model vit_nope --weights none --out {out}", "vit_nope"),
    "data-inspect-format": ("data inspect imagefoldr {data_good}", "imagefoldr"),
    "data-inspect-split": ("data inspect imagefolder {data_good} --split trian", "trian"),
    "data-inspect-variant": ("data inspect imagenet9 {data_good} --variant mixed_nope", "mixed_nope"),
    "data-inspect-task": ("data inspect bam {data_good} --task objekt", "objekt"),
    "data-objects": ("data semisynthetic --size 32 --n 10 --objects letters", "letters"),
    "data-task": ("data semisynthetic --size 32 --n 10 --task scenery", "scenery"),
    "data-sheet-split": ("data sheet --size 32 --n 10 --split tset --out {out}/s.png", "tset"),
    "evaluate-split": ("evaluate {ckpt} --split tset --out {out}", "tset"),
    "evaluate-data-unknown": ("evaluate {ckpt} --data sorce=x --out {out}", "sorce"),
    "evaluate-data-no-equals": ("evaluate {ckpt} --data root --out {out}", "root"),
    "evaluate-data-image-size": ("evaluate {ckpt} --data image_size=0 --out {out}", "image_size"),
    "evaluate-data-source": ("evaluate {ckpt} --data source=imagenot --out {out}", "imagenot"),
    "command": ("explian {img}", "explian"),
    "inv-action": ("inv explian {img}", "explian"),
    "label-action": ("label sreve {runs}", "sreve"),
    "data-action": ("data inspekt imagefolder {data_good}", "inspekt"),
    "option": ("predict {ckpt} {img} --outt {out}", "--outt"),
    "missing-argument": ("predict {ckpt}", "images"),
    "info-argument": ("info extra", "extra"),
    "label-host": ("label serve {runs} --db {out}/a.sqlite --port 0 --host 999.1.1.1", "999.1.1.1"),
}
for name, (argv, token) in NAMES.items():
    case(f"name-{name}", argv, token)
case(
    "evaluate-data-root-missing",
    "evaluate {ckpt} --data source=cifar10 root={data_missing} --out {out}",
    "{data_missing}",
    guard=False,
)  # refused when the evaluation reads its data, before any output
for option, fmt in (("--masks {masks_good}", "cifar10"), ("--split val", "imagefolder"),
                    ("--variant mixed_rand", "imagefolder"), ("--task scene", "imagenet")):  # fmt: skip
    case(
        f"data-inspect-{option.split()[0][2:]}-for-{fmt}",
        f"data inspect {fmt} {{data_good}} {option}",
        option.split()[0],
    )  # an option that does not apply is refused, not ignored
case("data-semisynthetic-size-too-small", "data semisynthetic --n 10 --size 8", "image_size=8")
case("data-semisynthetic-size-too-large", "data semisynthetic --n 10 --size 5000", "image_size=5000")
case("data-sheet-not-png", "data sheet --size 32 --n 10 --out {out}/s.txt", "s.txt")
case("data-inspect-sheet-not-png", "data inspect imagefolder {data_good} --sheet {out}/s", "{out}/s")

# Data sets: data inspect on broken folders and masks.
for name in ("empty_class", "only_files", "no_classes", "missing", "loop", "a_file"):
    case(f"data-inspect-{name}", f"data inspect imagefolder {{data_{name}}}", f"{{data_{name}}}",
         phrases={"missing": SAYS["missing"], "loop": SAYS["loop"], "a_file": ("file",),
                  "empty_class": ("empty", "no image")}.get(name, ()))  # fmt: skip
for fmt in ("cifar10", "imagenet", "imagenet9", "coco10", "bam"):
    case(f"data-inspect-{fmt}-on-imagefolder", f"data inspect {fmt} {{data_good}}", "{data_good}")
    case(f"data-inspect-{fmt}-missing", f"data inspect {fmt} {{data_missing}}", "{data_missing}")
case("data-inspect-masks-wrong-size", "data inspect imagefolder {data_good} --masks {masks_wrong_size}", "a.png")
for name in ("missing", "loop", "a_file"):
    case(
        f"data-inspect-masks-{name}",
        f"data inspect imagefolder {{data_good}} --masks {{data_{name}}}",
        f"{{data_{name}}}",
        phrases={"missing": SAYS["missing"], "loop": SAYS["loop"], "a_file": ("file",)}[name],
    )
case("data-inspect-cifar-crafted-pickle", "data inspect cifar10 {cifar_crafted}", "{cifar_crafted_batch}", "refused")
case("data-inspect-cifar-garbled-batch", "data inspect cifar10 {cifar_garbled}", "{cifar_garbled}")
case("data-inspect-bam-crafted-pickle", "data inspect bam {bam_crafted}", "val_mask", "refused")
case("data-inspect-bam-outside", "data inspect bam {bam_outside}", "good.png", "outside")

# Labelling: cluster-map folders, answers files and databases.
RUNS_SAYS = {"missing": SAYS["missing"], "loop": SAYS["loop"], "a_file": ("file",), "not_json": ("json",),
             "a_list": ("list",), "not_utf8": ("utf-8",), "reveal_outside": ("outside",),
             "reveal_absolute": ("outside",), "no_layers": ("layers",), "layers_text": ("layers",)}  # fmt: skip
for name in RUNS_CLASSES:
    key, says = "{runs_" + name + "}", RUNS_SAYS.get(name, ())
    token = key if name not in ("reveal_outside", "reveal_absolute") else "etc/passwd"
    case(f"label-serve-runs-{name}", f"label serve {key} --db {{out}}/a.sqlite --port 0", token, phrases=says)
    if name not in ("reveal_outside", "reveal_absolute", "no_reveal_images"):  # files inv global does not read
        case(f"inv-global-runs-{name}", f"inv global {key} --answers {{csv_good}} --out {{out}}", token,
             phrases=says)  # fmt: skip
for name in ("no_image", "garbled_image"):
    case(f"inv-global-runs-{name}", f"inv global {{runs_{name}}} --answers {{csv_good}} --out {{out}}",
         f"{{runs_{name}}}")  # fmt: skip
case("inv-global-runs-reveal-outside-with-good", "inv global {runs} {runs_reveal_outside} --answers {csv_good} "
     "--out {out}", "etc/passwd")  # fmt: skip
file_cases(
    "label-import",
    "csv",
    [*FILE_CLASSES, "no_header", "huge_field", "not_utf8"],
    "label import {bad} --db {out}/a.sqlite",
)
for name in ("nul_bytes", "nan_times", "inf_times"):  # every row is bad: nothing stored, no database left behind
    case(f"label-import-{name}", f"label import {{csv_{name}}} --db {{out}}/a.sqlite", f"{name}.csv")


def _imported(count: int) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        from p2pvision.label.store import AnswerStore

        with AnswerStore(out / "a.sqlite") as store:
            assert store.count() == count

    return check


case(
    "label-import-mixed-rows",
    "label import {csv_mixed} --db {out}/a.sqlite",
    "mixed.csv:3",
    "mixed.csv:4",
    code=1,
    failed=2,
    check=_imported(1),
)
file_cases(
    "inv-global-answers",
    "csv",
    [*FILE_CLASSES, "no_header", "huge_field", "not_utf8"],
    "inv global {runs} --answers {bad} --out {out}",
)
for command in ("label export --out {out}/a.csv", "label serve {runs} --port 0", "inv global {runs} --out {out}",
                "label import {csv_good}"):  # fmt: skip
    name = "-".join(command.split()[:2])
    classes = [
        c
        for c in FILE_CLASSES
        if c not in ("empty", "truncated")
        and (c != "missing" or "import" not in name)
        and (c not in ("missing", "broken") or "serve" not in name)
    ]  # a new database is created there
    file_cases(f"{name}-db", "sqlite", classes, f"{command} --db {{bad}}")

# Output paths: an existing file (kept as it is), a path inside a file, and a read-only folder, for every command.
OUTPUTS = {
    "predict": "predict {ckpt} {img} --out",
    "explain": f"explain {{img}} {EXPLAIN.rsplit(maxsplit=2)[0]} --out",
    "inv-explain": f"inv explain {{img}} {INV.rsplit(maxsplit=2)[0]} --out",
    "inv-global": "inv global {runs} --answers {csv_good} --out",
    "train": "train --out",
    "benchmark": "benchmark --config cpu --out",
    "demo": "demo --out",
    "evaluate": "evaluate {ckpt} --out",
    "data-export": "data export --size 32 --n 10 --out",
    "data-sheet": "data sheet --size 32 --n 10 --out",
    "data-inspect-sheet": "data inspect imagefolder {data_good} --sheet",
    "label-export": "label export --db {sqlite_good} --out",
}
for name, argv in OUTPUTS.items():
    folder_wanted = name not in ("data-sheet", "data-inspect-sheet", "label-export")
    targets = {"existing-file": "{file}", "inside-a-file": "{file}/sub", "read-only": "{ro}/sub",
               "loop": "{loop}/sub"}  # fmt: skip
    if not folder_wanted:
        targets["a-folder"] = "{ro}"
    for kind, target in targets.items():
        if folder_wanted or kind != "existing-file":
            case(f"out-{name}-{kind}", [*argv.split(), target], target.split("/")[0], as_root=kind != "read-only",
                 phrases={"loop": SAYS["loop"], "read-only": ("writable",), "existing-file": ("file",),
                          "inside-a-file": ("file",), "a-folder": ("folder",)}[kind])  # fmt: skip
case("data-export-non-empty-out", "data export --size 32 --n 10 --out {ro}", "{ro}")
case("demo-broken-model", "demo --out {demo}", "{demo}")
case("train-resume-nothing", "train --resume --out {out}", "{out}", phrases=("nothing to resume",))
case("train-over-an-earlier-run", "train --out {ran}", "{ran}", phrases=("--resume",))


# ---------------------------------------------------------------------------------------------------------------------
# Running a case.


PROGRESS = re.compile(r"\d+%\|.*\| *\d+/\d+ \[")  # a progress bar's line (tqdm), not a message


class Hung(Exception):
    """A case that blocks (e.g. reading a FIFO) instead of refusing the input."""


def _files(folder: Path) -> set[str]:
    found = set()
    for parent, dirs, names in os.walk(folder):
        found.update(os.path.relpath(os.path.join(parent, name), folder) for name in [*dirs, *names])
    return found


@pytest.fixture(scope="module")
def snapshot(env: Env) -> set[str]:
    return _files(env.root)


def _guard(monkeypatch) -> None:
    """Training, benchmarking and serving fail the test at once: a bad value must be refused before them."""
    import p2pvision.benchmark.evaluate  # noqa: F401  (imported unpatched: it binds run_benchmark at import)

    def refuse(*args, **kwargs):
        raise AssertionError("the bad input was accepted and the work started")

    for target in ("p2pvision.train.run._trainer", "p2pvision.benchmark.engine.run_benchmark",
                   "p2pvision.benchmark.evaluate.run_benchmark"):  # fmt: skip
        monkeypatch.setattr(target, refuse)
    monkeypatch.setattr(socketserver.BaseServer, "serve_forever", refuse)


def _fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: values.get(match[1], match[0]), template)


def _prepare(tmp_path: Path, env: Env, argv: list[str]) -> dict[str, str]:
    """The values of the argv templates: the inputs, and what this case's argv names in its own folder."""
    (tmp_path / "existing.txt").write_text("keep me")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    (read_only / "kept.txt").write_text("keep me too")
    read_only.chmod(0o555)
    os.symlink("loop", tmp_path / "loop")
    values = {**env, "out": str(tmp_path / "out"), "file": str(tmp_path / "existing.txt"), "ro": str(read_only),
              "loop": str(tmp_path / "loop"), "demo": str(tmp_path / "demo")}  # fmt: skip
    text = " ".join(argv)
    if "{demo}" in text:  # a demo folder whose trained model is broken
        shutil.copytree(env["ckpt_garbled_weights"], tmp_path / "demo" / "run" / "model")
    if "{ran}" in text:  # the folder of an earlier training run
        (tmp_path / "ran" / "checkpoints").mkdir(parents=True)
        values["ran"] = str(tmp_path / "ran")
    if "{sqlite_good}" in text:
        values["sqlite_good"] = str(_answers_db(tmp_path / "answers.sqlite"))
    return values


def _answers_db(path: Path) -> Path:
    from p2pvision.label.store import AnswerStore

    with AnswerStore(path):
        pass
    return path


def _as_a_user(monkeypatch) -> None:
    """Root may read and write whatever the permission bits say: as root, the permission checks (os.access) answer
    as they would for a user, so that the unreadable inputs and read-only folders are refused as such."""
    access = os.access

    def user_access(path, mode, *args, **kwargs) -> bool:
        if mode != os.F_OK and access(path, os.F_OK):  # the owner's bits (the test's files are its own)
            owner = (os.stat(path).st_mode >> 6) & 0o7
            if mode & ~owner & (os.R_OK | os.W_OK | os.X_OK):
                return False
        return access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", user_access)


def _on_alarm(signum, frame):
    raise Hung


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, env: Env, snapshot: set[str], tmp_path: Path, monkeypatch, capsys) -> None:
    if ROOT and not case.as_root:
        _as_a_user(monkeypatch)
    if case.guard:
        _guard(monkeypatch)
    (tmp_path / "work").mkdir()
    values = _prepare(tmp_path / "work", env, case.argv)
    monkeypatch.chdir(tmp_path / "work")  # default output folders (results/...) land here and are checked
    before = _files(tmp_path / "work")
    argv = [_fill(part, values) for part in case.argv]
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(30)
    try:
        code = main(argv)
    except Hung:
        pytest.fail(f"{argv} blocked for 30 s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        (tmp_path / "work" / "read-only").chmod(0o755)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    assert code == case.code, (argv, code, err)
    lines = [line for line in err.splitlines() if line.strip() and not PROGRESS.search(line)]
    errors = [line for line in lines if line.startswith("p2pvision: error:")]
    if case.code == 0:
        assert not errors, err
    elif case.code == 2:
        assert len(lines) == 1 and len(errors) == 1, (argv, err)
    else:
        assert len(errors) == case.failed and len(lines) == case.failed + 1, (argv, err)
    for name in case.names:
        token = _fill(name, values)
        assert sum(token in line for line in errors) >= 1, (f"no error line names {token!r}", argv, err)
    if case.phrases:  # what the line says, without the names in it (a path may hold the word 'folder' or 'loop')
        said = errors[0]
        for part in argv:
            said = said.replace(part, "")
        assert any(phrase in said.lower() for phrase in case.phrases), (f"not {case.phrases}", argv, err)
    # nothing hidden, partial or stray: the inputs are as they were, the work folder holds only what it held, the
    # output folder nothing (exit 2) or the good inputs' full output (exit 1, 0)
    assert not _files(env.root) ^ snapshot, "the inputs changed"
    assert Path(values["file"]).read_text() == "keep me"
    assert (tmp_path / "work" / "read-only" / "kept.txt").read_text() == "keep me too"
    after = _files(tmp_path / "work")
    assert not [name for name in after if Path(name).name.startswith(".")], after
    created = {name for name in after - before if not name.startswith("out" + os.sep) and name != "out"}
    assert not created, created
    out_folder = Path(values["out"])
    if case.code == 2:
        assert not out_folder.exists() or not any(out_folder.iterdir()), _files(out_folder)
    if case.check is not None:
        case.check(out_folder)


def test_the_sweep_is_broad() -> None:
    assert len(CASES) >= 300
    commands = {tuple(part for part in c.argv[:2] if not part.startswith(("{", "-"))) for c in CASES}
    for command in ("info", "predict", "evaluate", "explain", "train", "benchmark", "demo", "data semisynthetic",
                    "data export", "data sheet", "data inspect", "inv explain", "inv global", "label serve",
                    "label export", "label import"):  # fmt: skip
        assert any(" ".join(found).startswith(command) for found in commands), command


# ---------------------------------------------------------------------------------------------------------------------
# Signals: SIGTERM (schedulers, docker stop) and SIGINT (Ctrl-C) in the middle of the work, sent to this process
# while the second input is being worked on. The finished inputs keep their full output and its index; nothing
# half-written or hidden stays; exit codes 143 and 130, one line.

SIGNALLED = {
    # command: (argv, the function whose second call receives the signal, what the first input left)
    "predict": (["predict", "{ckpt}", "{img}", "{img2}", "{img}", "--out", "{out}", "--tau", "0.5"],
                "p2pvision.predict.explanation_figure", _predicted(["good.png"])),
    "explain": (["explain", "{img}", "{img2}", *EXPLAIN.split()],
                "p2pvision.report.explanation_figures.explanation_figure", _explained(["good"])),
    "inv-explain": (["inv", "explain", "{img}", "{img2}", *INV.split()], "p2pvision.inv.figures.overview_figure",
                    _mapped(["good"])),
    "data-export": (["data", "export", "--size", "32", "--n", "10", "--out", "{out}"],
                    "p2pvision.data.export._save_png", lambda out: None),
}  # fmt: skip


@pytest.mark.parametrize(
    ("command", "signum"),
    [(command, signal.SIGTERM) for command in SIGNALLED] + [("predict", signal.SIGINT), ("data-export", signal.SIGINT)],
    ids=[f"{command}-SIGTERM" for command in SIGNALLED] + ["predict-SIGINT", "data-export-SIGINT"],
)  # Ctrl-C takes the same way out as SIGTERM (KeyboardInterrupt): tried on two commands
def test_a_signal_keeps_what_finished(command: str, signum: int, env: Env, tmp_path: Path, monkeypatch, capsys) -> None:
    argv, target, check = SIGNALLED[command]
    module, name = target.rsplit(".", 1)
    original = getattr(__import__(module, fromlist=[name]), name)
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signum)  # delivered here, as from outside, while the second input is in work
        return original(*args, **kwargs)

    monkeypatch.setattr(target, interrupted)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    values = {**env, "out": str(out)}
    code = main([_fill(part, values) for part in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("p2pvision")]
    assert "Traceback" not in err and len(calls) == 2
    if signum == signal.SIGTERM:
        assert code == 143 and lines == ["p2pvision: terminated (SIGTERM); finished outputs are kept"], err
    else:
        assert code == 130 and lines == ["p2pvision: interrupted"], err
    assert not [name for name in _files(tmp_path) if Path(name).name.startswith(".")]
    if command == "data-export":
        assert not out.exists()  # an export is whole or absent
    else:
        check(out)


def test_folders_written_whole_get_the_usual_permissions(env: Env, tmp_path: Path) -> None:
    """A folder written whole (an export, a cluster-map folder) starts as a private temporary folder (0700); once
    in place it has the usual permissions (0777 less the umask), like every file p2pvision writes."""
    from p2pvision.cache import atomic_folder

    umask = os.umask(0)
    os.umask(umask)
    with atomic_folder(tmp_path / "whole") as folder:
        (folder / "a.txt").write_text("a")
    assert (tmp_path / "whole").stat().st_mode & 0o777 == 0o777 & ~umask
    assert Path(env["runs"]).stat().st_mode & 0o777 == 0o777 & ~umask  # written by save_cluster_maps
    assert not [name for name in _files(tmp_path) if Path(name).name.startswith(".")]
