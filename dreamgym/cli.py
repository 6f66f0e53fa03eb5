"""`dreamgym` command line: one sub-command per job, options generated from each job's dataclass.

Every long job's options live in a dataclass next to the code that runs it (`TrainConfig` in
training/config.py, `ControllerConfig` in agents/cmaes.py, ...). Each field's `metadata["help"]` is its
one-line doc; this module turns the fields into `--kebab-case` options, so the CLI and the
library can never disagree. Only the sub-command named on the command line has its config
imported (`dreamgym --help` loads no torch); one whose module cannot be imported says so, with
the import error, instead of running without its options. A field's `metadata["aliases"]` (old
spellings, `utils.options`) become flags that still work and warn. A field with `metadata["const"]` is a flag with an optional value (`--ray` alone means const,
`--ray ADDRESS` the address, no flag the field's default); `metadata["metavar"]` names its value.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dreamgym.runners.errors import ClusterError
from dreamgym.utils.files import describe_os_error
from dreamgym.utils.locks import FolderBusyError

# sub-command → (module of its config dataclass, the dataclass, command module, one-line help).
# The command module (dreamgym/commands/) has `run(config) -> int`: it calls the job and prints.
JOBS: dict[str, tuple[str, str, str, str]] = {
    "init": (
        "dreamgym.init_world",
        "InitConfig",
        "init_world",
        "write an untrained world for a real env",
    ),
    "collect": ("dreamgym.data", "CollectConfig", "collect", "collect real rollouts"),
    "select": (
        "dreamgym.data.subset",
        "SelectConfig",
        "select",
        "a dataset of another's episodes picked by return (e.g. a controller's failures)",
    ),
    "train": (
        "dreamgym.training.config",
        "TrainConfig",
        "train",
        "train V, then M, then write the bundle",
    ),
    "controller": (
        "dreamgym.agents.cmaes",
        "ControllerConfig",
        "controller",
        "CMA-ES linear controller in the batched dream",
    ),
    "calibrate": (
        "dreamgym.evaluation.calibrate",
        "CalibrateConfig",
        "calibrate",
        "fit M's done-logit offset so that fixed policies' dreams last as long as their real data",
    ),
    "sb3": (
        "dreamgym.agents.sb3",
        "SB3Config",
        "sb3",
        "train a stable-baselines3 agent in the dream",
    ),
    "evaluate": (
        "dreamgym.evaluation.jobs",
        "EvaluateConfig",
        "evaluate",
        "returns of a policy in the dream or the real env",
    ),
    "gap": (
        "dreamgym.evaluation.gap",
        "GapConfig",
        "gap",
        "dream vs real returns of one policy: table, CSV, JSON, plot",
    ),
    "diagnose": (
        "dreamgym.evaluation.diagnose",
        "DiagnoseConfig",
        "diagnose",
        "is the world faithful? fixed policies dream vs real, M teacher-forced on real episodes",
    ),
    "rank": (
        "dreamgym.evaluation.rank",
        "RankConfig",
        "rank",
        "does the dream rank a panel of policies as reality does? ρ, r, dream/real, a fitted line",
    ),
    "demo": ("dreamgym.demo", "DemoConfig", "demo", "the main job on the bundled worlds"),
    "play": ("dreamgym.play", "PlayConfig", "play", "drive inside the dream with the keyboard"),
}


def _takes_list(tp: Any) -> bool:
    """A `list[...]` field (alone or in a union, e.g. `str | list[str]`) takes one or more values."""
    if typing.get_origin(tp) is list:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(typing.get_origin(a) is list for a in typing.get_args(tp))
    return False


def _option_type(tp: Any) -> tuple[Callable[[str], Any] | None, bool]:
    """(argparse type, is_bool) for a dataclass field type (handles `X | None`)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else str
    if tp is bool:
        return None, True
    if tp in (int, float, str):
        return tp, False
    return str, False


class CommandUnavailableError(Exception):
    """A sub-command whose config module cannot be imported (a missing dependency, a broken
    install): its options are unknown, so it cannot run."""


class _DeprecatedFlag(argparse.Action):
    """An old spelling of an option: stores into the new one's field and says it is deprecated."""

    def __init__(self, *args: Any, new_flag: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new_flag = new_flag

    def __call__(self, parser: Any, namespace: Any, values: Any, option: str | None = None) -> None:
        print(f"dreamgym: {option} is deprecated, use {self.new_flag}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _add_aliases(parser: argparse.ArgumentParser, f: dataclasses.Field, kwargs: dict) -> None:
    """`--old-name` for each of the field's aliases: hidden from --help, warns when used."""
    flag = "--" + f.name.replace("_", "-")
    for alias in f.metadata.get("aliases", ()):
        parser.add_argument(
            "--" + alias.replace("_", "-"),
            **{k: v for k, v in kwargs.items() if k in ("type", "nargs", "const", "choices")},
            dest=f.name,
            action=_DeprecatedFlag,
            new_flag=flag,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--field-name` option per dataclass field; fields without defaults are required."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli") is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        conv, is_bool = _option_type(hints[f.name])
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text}
        if _takes_list(hints[f.name]):
            kwargs["nargs"] = "+"
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        if "const" in f.metadata:  # `--flag` alone gives const, `--flag VALUE` the value
            kwargs.update(nargs="?", const=f.metadata["const"])
            kwargs["help"] = f"{help_text} (alone: {f.metadata['const']})"
        if f.metadata.get("choice_flags"):
            # `--mode real` and its shorthand `--real`: one flag per choice, at most one given.
            group = parser.add_mutually_exclusive_group()
            kwargs["help"] = f"{help_text} (default: {default})"
            group.add_argument(flag, type=conv, default=default, **kwargs)
            for choice in f.metadata["choices"]:
                group.add_argument(
                    f"--{choice}",
                    dest=f.name,
                    action="store_const",
                    const=choice,
                    default=default,
                    help=f"same as {flag} {choice}",
                )
            continue
        if is_bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, **kwargs
            )
        elif has_default:
            if default is not None:
                kwargs["help"] = f"{help_text} (default: {default})"
            parser.add_argument(flag, type=conv, default=default, **kwargs)
        else:
            parser.add_argument(flag, type=conv, required=True, **kwargs)
        _add_aliases(parser, f, {"type": conv, **kwargs})


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command, with the options of `commands` (default: all of them).

    Raises `CommandUnavailableError` when one of `commands` cannot import its config.
    """
    parser = argparse.ArgumentParser(
        prog="dreamgym",
        description="Learned world models as Gymnasium environments: collect, train, dream, transfer.",
    )
    from dreamgym import __version__

    parser.add_argument("--version", action="version", version=f"dreamgym {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = set(JOBS if commands is None else commands)
    for name, (_, _, _, help_text) in JOBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_job=name)
        if name in wanted:
            add_dataclass_args(p, config_class(name))
    return parser


def config_class(command: str) -> type:
    """The config dataclass of `command`, imported now; `CommandUnavailableError` if it cannot be."""
    module, cls_name, _, _ = JOBS[command]
    try:
        return getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as e:
        raise CommandUnavailableError(
            f"dreamgym {command}: cannot load its options from {module} "
            f"({type(e).__name__}: {e}); reinstall dreamgym or install what it names"
        ) from e


def _command_in(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line: the first word that is not an option."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in JOBS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    try:
        parser = build_parser([] if command is None else [command])
    except CommandUnavailableError as e:
        print(e, file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if getattr(args, "_job", None) is None:
        parser.print_help()
        return 0
    _, _, module, _ = JOBS[args._job]
    cls = config_class(args._job)
    values = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)
    }
    try:
        config = cls(**values)
        return int(importlib.import_module(f"dreamgym.commands.{module}").run(config))
    except KeyboardInterrupt:
        print("\ninterrupted — re-run the same command to resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, FolderBusyError, ClusterError) as e:
        print(f"dreamgym {args._job}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a folder we may not write: the environment, not a bug
        print(f"dreamgym {args._job}: error: {describe_os_error(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
