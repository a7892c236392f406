"""Glue between DVC and the notebooks: profiles in params.yaml, one command per pipeline stage.

`params.yaml` holds the active `profile` name and one block per profile (`default`: generated data on a
CPU, with Tables 4-8 on small proxies; `small`: a longer ablation schedule; `paper`: COCO on GPUs). The
lists `models` and `ablation_variants` name every stage any profile can run (DVC's `foreach` needs a
fixed list); the active profile says which of them run, and the others record a skip marker, so one
dvc.yaml serves every profile. An ablation item is `VARIANT-sSEED`: the variant is an entry of
`ablation_catalogue` (model, hyperparameters, the table rows it fills), the seed one of the profile's
`ablations.seeds`.
`yolov7 pipeline STAGE [ITEM]` resolves the settings and runs the stage's notebook with
papermill, passing the settings as notebook parameters; the executed notebooks land in
`runs/notebooks/` for reading in JupyterLab.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

NOTEBOOKS = Path("notebooks")
EXECUTED = Path("runs/notebooks")


def chdir_to_repo(marker: str = "dvc.yaml") -> Path:
    """Make the nearest folder above the working folder that holds `marker` the working folder.

    JupyterLab and nbval start a notebook's kernel in `notebooks/`, papermill in the folder it is given:
    every notebook calls this first so that its paths (data/, runs/, reports/) mean the same in all
    three. Outside a checkout (no marker above) the working folder is left as it is.
    """
    import os

    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / marker).is_file():
            os.chdir(folder)
            return folder
    return here


def is_generated_set(folder: str | Path) -> bool:
    """Whether `folder` holds a data set written by `synthesize` (its data.yaml starts with its header)."""
    from yolov7lib.data.synth import GENERATED_HEADER

    data_yaml = Path(folder) / "data.yaml"
    try:
        with data_yaml.open(encoding="utf-8") as f:
            return f.readline().startswith(GENERATED_HEADER)
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return False


def _holds_files(folder: Path) -> bool:
    return folder.exists() and (not folder.is_dir() or any(folder.iterdir()))


def generate_data_set(
    root: str | Path, data_yaml: str | Path, n_train: int, n_val: int, img_size: int, seed: int
) -> Path:
    """Notebook 01 (`kind: synth`): write the generated set to `root` afresh; return its data.yaml.

    `data_yaml` (the notebook's `yaml`, the config the other stages read) must be `root`/data.yaml. An
    existing `root` is replaced only when it is empty or holds an earlier generated set: any other folder
    (a mistyped `root`, your own data) stops this with a message before anything is written or deleted.
    """
    from yolov7lib.data import synthesize

    root = Path(root)
    if Path(data_yaml) != root / "data.yaml":
        raise ValueError(
            f"the generated set's config is {root / 'data.yaml'}, not yaml={data_yaml}: pass "
            f"`-p yaml {root / 'data.yaml'}` together with `-p root {root}`"
        )
    if _holds_files(root) and not is_generated_set(root):
        raise FileExistsError(
            f"{root} exists and holds files that are not a generated data set; nothing was deleted. "
            "Give `root` a new or empty folder (and `yaml` its data.yaml)"
        )
    if root.exists():
        shutil.rmtree(root)
    return synthesize(root, n_train=n_train, n_val=n_val, img_size=img_size, seed=seed, progress=False)


def smoke_data(data: str | Path, profile: str) -> Path:
    """Notebooks 02 and 04 on their own (`profile: smoke`): generate a tiny data set (40 + 12 images,
    128 px) where `data` says if it is missing, and return `data`.

    Only into a folder that is missing or empty: a `data` that names no file in a folder holding files
    (a mistyped path to your own data.yaml) raises FileNotFoundError and deletes nothing. Other profiles
    never generate (the data stage does).
    """
    from yolov7lib.data import synthesize

    data = Path(data)
    if data.is_file() or profile != "smoke":
        return data
    if data.name != "data.yaml" or _holds_files(data.parent):
        raise FileNotFoundError(
            f"data config {data} not found; a smoke-test set is generated only as data.yaml in a new or "
            f"empty folder, and {data.parent} is not one. Check the path (-p data PATH/TO/data.yaml)"
        )
    synthesize(data.parent, n_train=40, n_val=12, img_size=128, seed=0, progress=False)
    return data


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: the notebook it runs and, for `foreach` stages, the list naming its items."""

    notebook: str
    items: str | None = None  # "models" or "ablation_variants"


STAGES: dict[str, Stage] = {
    "tour": Stage("00-architecture-tour.ipynb"),
    "data": Stage("01-data.ipynb"),
    "train": Stage("02-train.ipynb", items="models"),
    "ablation": Stage("02-train.ipynb", items="ablation_variants"),
    "reparameterize": Stage("03-reparameterize.ipynb"),
    "evaluate": Stage("04-evaluate.ipynb"),
    "speed": Stage("05-speed.ipynb"),
    "architecture": Stage("06-architecture-tables.ipynb"),
    "ablations": Stage("07-ablations.ipynb"),
    "figures": Stage("08-figures.ipynb"),
    "report": Stage("09-report.ipynb"),
}


def load_params(path: str | Path = "params.yaml", profile: str | None = None) -> tuple[str, dict[str, Any]]:
    """(profile name, its settings) from params.yaml; `profile` overrides the file's choice."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the pipeline from the repository root")
    params = yaml.safe_load(path.read_text()) or {}
    name = profile or params.get("profile", "default")
    known = [k for k, v in params.items() if isinstance(v, dict) and k != "ablation_catalogue"]
    if name not in known:
        raise KeyError(f"profile {name!r} is not in {path}; known profiles: {', '.join(known)}")
    settings = dict(params[name])
    settings["_lists"] = {k: params.get(k, []) for k in ("models", "ablation_variants")}
    settings["_catalogue"] = params.get("ablation_catalogue", {})
    return name, settings


def split_item(item: str) -> tuple[str, int]:
    """'t6-base-s1' -> ('t6-base', 1): an ablation item is a catalogue variant and a seed."""
    variant, sep, seed = item.rpartition("-s")
    if not sep or not seed.isdigit():
        raise KeyError(f"ablation item {item!r} is not of the form VARIANT-sSEED")
    return variant, int(seed)


def ablation_run(item: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Training options of one ablation item: the profile's common settings, then the variant's."""
    variant, seed = split_item(item)
    catalogue = settings["_catalogue"]
    if variant not in catalogue:
        raise KeyError(f"ablation variant {variant!r} is not in params.yaml's ablation_catalogue")
    entry = {k: v for k, v in catalogue[variant].items() if k != "rows"}
    common = settings["ablations"]["common"]
    # The catalogue holds the paper's experiment (model, hyperparameters, input size); the profile's
    # common settings set the scale (epochs, input size, width) and may add hyperparameter overrides,
    # under the variant's own (its assigner, its constraint).
    overrides = {**common.get("hyp_overrides", {}), **entry.get("hyp_overrides", {})}
    return {**entry, **common, "hyp_overrides": overrides, "seed": seed}


# Training stages -> the folder their runs (runs/FOLDER/ITEM) and metrics (reports/metrics/FOLDER) go to.
RUN_FOLDERS = {"train": "train", "ablation": "ablations"}


def metrics_path(stage: str, item: str) -> str:
    """The metrics file of training stage item `item` (its .csv curve sits beside it)."""
    return f"reports/metrics/{RUN_FOLDERS[stage]}/{item}.json"


def objectness_path(item: str) -> str:
    """Where ablation run `item` keeps its trained heads' objectness maps (an output of its stage)."""
    return metrics_path("ablation", item).removesuffix(".json") + ".objectness.pt"


def notebook_parameters(stage: str, item: str | None, profile: str, settings: dict[str, Any]) -> dict:
    """The papermill parameters of one stage run: the profile's block for the stage, flattened."""
    base = {"profile": profile}
    if stage in RUN_FOLDERS:
        run = dict(settings["train"]["runs"][item]) if stage == "train" else ablation_run(item, settings)
        # an ablation run also keeps its heads' objectness maps (Figure 8 compares the assigners with them)
        objectness = objectness_path(item) if stage == "ablation" else ""
        return {
            **base, **run, "name": item, "data": settings["data"]["yaml"],
            "project": f"runs/{RUN_FOLDERS[stage]}", "metrics_out": metrics_path(stage, item),
            "objectness_out": objectness,
        }  # fmt: skip
    block = settings.get(stage, {})
    return {**base, **block}


def torchrun_command(options: dict[str, Any], nproc: int) -> list[str]:
    """The one-node `torchrun` command (`nproc` processes) that trains with `options`, the keyword
    arguments of `yolov7lib.train`, through the `yolov7 train` command line.

    Every option whose value differs from TrainOptions' default is passed, falsy values included
    (`workers=0`, `seed=0` on a kit whose default changed); an option the command line cannot say
    (`hyp_overrides`: write them into a hyp file first; a switched-off `plots`) raises ValueError; what
    it can say is read from `yolov7 train`'s own parser. `--standalone` lets torchrun pick a free port,
    so two runs on one machine do not collide.
    """
    import argparse
    from dataclasses import MISSING, fields

    from yolov7lib.cli import build_parser
    from yolov7lib.engine.trainer import TrainOptions

    defaults = {f.name: f.default for f in fields(TrainOptions) if f.default is not MISSING}
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    line = {a.dest: a for a in commands.choices["train"]._actions if a.option_strings and a.dest in defaults}
    args = []
    for key, value in options.items():
        if key == "hyp_overrides" and not value:
            continue
        if key not in line:
            raise ValueError(f"option {key}={value!r} cannot be given to `yolov7 train` on the command line")
        if value == defaults[key] and type(value) is type(defaults[key]):
            continue
        flag = line[key].option_strings[-1]
        if isinstance(line[key], argparse._StoreTrueAction):
            if value is not True:
                raise ValueError(f"option {key}={value!r}: `yolov7 train` has only the switch {flag}")
            args.append(flag)
        else:
            args.append(f"{flag}={value}")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [*launcher, "-m", "yolov7lib", "train", *args]


def is_active(stage: str, item: str | None, settings: dict[str, Any]) -> bool:
    if stage == "train":
        return item in settings["train"]["runs"]
    if stage == "ablation":
        ablations = settings.get("ablations") or {}
        variant, seed = split_item(item)
        return variant in ablations.get("variants", []) and seed in ablations.get("seeds", [0])
    return True


def write_skip(stage: str, item: str, profile: str) -> None:
    """Outputs of an item the active profile does not run: a marker saying so (DVC needs the outs)."""
    marker = {"skipped": True, "profile": profile, "stage": stage, "item": item,
              "reason": f"not part of the '{profile}' profile (see params.yaml)"}  # fmt: skip
    folder = Path("runs") / RUN_FOLDERS[stage] / item
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKIPPED.json").write_text(json.dumps(marker, indent=2))
    metrics = Path(metrics_path(stage, item))
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps(marker, indent=2))
    from yolov7lib.engine.trainer import RESULT_COLUMNS

    metrics.with_suffix(".csv").write_text(",".join(RESULT_COLUMNS) + "\n")  # no epochs: an empty curve
    if stage == "ablation":
        import torch

        torch.save(marker, objectness_path(item))


def run_stage(
    stage: str, item: str | None = None, params: str = "params.yaml", profile: str | None = None
) -> int:
    """Run one stage (its notebook through papermill) with the settings of the active profile."""
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    spec = STAGES[stage]
    name, settings = load_params(params, profile)
    if spec.items:
        known = settings["_lists"][spec.items]
        if item is None:
            raise KeyError(f"{stage} needs an item from params.yaml's `{spec.items}`: {', '.join(known)}")
        if item not in known:
            listed = ", ".join(known)
            raise KeyError(f"{stage} item {item!r} is not in params.yaml's `{spec.items}`: {listed}")
        if not is_active(stage, item, settings):
            write_skip(stage, item, name)
            print(f"{stage} {item}: not part of the '{name}' profile; wrote a skip marker")
            return 0
    elif item is not None:
        with_items = ", ".join(_item_stages())
        raise KeyError(f"{stage} takes no item (got {item!r}); the stages with items: {with_items}")
    notebook = NOTEBOOKS / spec.notebook
    if not notebook.is_file():  # the notebooks live in the repository, not in the installed package
        raise FileNotFoundError(
            f"{notebook} not found: the pipeline runs the notebooks of a yolov7lib checkout; "
            f"run `yolov7 pipeline` from its root (the folder holding dvc.yaml and notebooks/)"
        )
    import papermill

    parameters = notebook_parameters(stage, item, name, settings)
    EXECUTED.mkdir(parents=True, exist_ok=True)
    out = EXECUTED / (Path(spec.notebook).stem + (f"-{item}" if item else "") + ".ipynb")
    label = f"{stage} {item}" if item else stage
    print(f"{label}: {spec.notebook} with {json.dumps(parameters)}", file=sys.stderr)
    papermill.execute_notebook(
        str(notebook), str(out), parameters=parameters, kernel_name="python3",
        progress_bar=False, log_output=True, cwd=".",
    )  # fmt: skip
    return 0


def _item_stages() -> list[str]:
    return [name for name, spec in STAGES.items() if spec.items]
