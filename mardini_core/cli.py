"""`python -m mardini_core <command>`: one dispatcher, one module per command.

Errors a user can fix (`MarDiniError`) are printed as one line on stderr with exit code 2; the full
traceback only with `--debug`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import MarDiniError

# command name -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "presets": ("mardini_core.commands.presets", "parameter counts of every preset (built on the meta device)"),
    "bench": ("mardini_core.commands.bench", "speed and memory table of presets with random weights"),
    "generate": ("mardini_core.commands.generate", "video from images or a video: i2v, interpolation, loops, expansion"),
    "eval": ("mardini_core.commands.eval", "PSNR/SSIM of MarDini vs linear and DIS-flow baselines on real clips (VIDIM-style)"),
    "train-vae": ("mardini_core.commands.train_vae", "distil mardini-tae, a small autoencoder in TAEF2's latent space"),
    "vae-psnr": ("mardini_core.commands.vae_psnr", "reconstruction PSNR of autoencoders on real video frames"),
    "train": ("mardini_core.commands.train", "train one stage of the three-stage recipe from a stage config, resumable"),
    "encode": ("mardini_core.commands.encode", "pre-encode a video folder into latent shards for training (resumable, split over ranks)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The dispatcher's parser. Only `command`'s module is imported (and its arguments added); the others
    are listed from COMMANDS alone, so `--help` and each command start without importing the rest."""
    parser = argparse.ArgumentParser(
        prog="python -m mardini_core",
        description="MarDini: masked auto-regressive diffusion for video (planner + generator).",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        module = importlib.import_module(module_name)
        parsed = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,  # module docstrings keep their layout
        )
        module.add_arguments(parsed)
        parsed.set_defaults(_run=module.run)
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The command named in argv: the first word that is not an option (the dispatcher's own options,
    --debug and --help, take no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed escaped, never a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser(chosen_command(argv))
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python docs' recipe: no flush error at exit
        return 141
    except (MarDiniError, OSError) as exc:  # OSError: a path the system refuses (name too long, disk full...)
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
