"""`selfie-tvm`: one sub-command per verb, each in its own module.

The runtime's own verbs are listed here; other packages add theirs through the entry-point group
`selfie_tvm.commands` (pyproject.toml: `tuning` registers `compile` and `tune`), so the runtime
never imports them. A verb module has `register(subparsers)`, which sets `run` on its parser. A verb
whose module fails to import (its package's extras missing) is still listed, and running it says why.

A user's mistake or a missing artefact is one line on stderr (`error: ...`, saying what to do) and
exit status 2, never a traceback; `-v` shows the traceback of file-system errors.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType, SimpleNamespace

from ..errors import CommandUnavailableError, SelfieTvmError
from . import background, hair, models, segment

DESCRIPTION = ("Segment portraits with MediaPipe's selfie models (masks, hair colour, background) on LiteRT or on "
               "TVM libraries compiled and tuned for this CPU; compile and tune those libraries.")
EPILOG = """examples:
  selfie-tvm models                                 which models there are, and which are here
  selfie-tvm segment photo.jpg --out out/           a mask per class and an overlay, with LiteRT
  selfie-tvm segment photo.jpg --engine tvm-tuned   the same with the tuned TVM library (compile it first)
  selfie-tvm compile --tuned                        build the TVM libraries from the committed tuning records
  selfie-tvm hair photo.jpg --color '#8e44ad'       recolour the hair
  selfie-tvm background photo.jpg --background beach.jpg

Models are found in SELFIE_TVM_MODELS_DIR, then the cache, then downloaded (SELFIE_TVM_OFFLINE=1:
never). `selfie-tvm COMMAND --help` explains a command's options."""
ENTRY_POINT_GROUP = "selfie_tvm.commands"
BUILTIN = {"segment": segment, "hair": hair, "background": background, "models": models}



def _unavailable(ep: EntryPoint, error: ImportError) -> SimpleNamespace:
    """A stand-in verb that accepts any arguments and says why the real one cannot run."""
    reason = f"{type(error).__name__}: {error}"

    def register(sub) -> None:
        # No option prefix: whatever options the real verb has are taken as plain arguments.
        p = sub.add_parser(ep.name, help=f"unavailable ({reason})", add_help=False, prefix_chars="\0")
        p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(run=run)

    def run(args) -> int:
        raise CommandUnavailableError(
            f"`selfie-tvm {ep.name}` is unavailable: importing {ep.value} failed with {reason}. Install the "
            "extras of the package that provides it, e.g. pip install 'selfie-tvm[tune]'")

    return SimpleNamespace(register=register, run=run)


def commands() -> dict[str, ModuleType | SimpleNamespace]:
    """The runtime's verbs, then those other installed packages register."""
    found: dict[str, ModuleType | SimpleNamespace] = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue
        try:
            found[ep.name] = ep.load()
        except ImportError as e:
            found[ep.name] = _unavailable(ep, e)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfie-tvm", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log more (INFO level), and show the traceback of a file-system error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands().values():
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.run(args) or 0
    except SelfieTvmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. an output directory that cannot be written
        if args.verbose:
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where} (run with -v for details)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
