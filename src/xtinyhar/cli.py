"""``xtinyhar <subcommand>``: parses arguments and calls library functions; nothing more.

Errors caused by user input (:class:`XTinyHARError`) print as one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from xtinyhar import __version__
from xtinyhar.config import DATASETS, load_config
from xtinyhar.errors import XTinyHARError

log = logging.getLogger("xtinyhar")


def _load_cfg(args: argparse.Namespace):
    overrides = {}
    if getattr(args, "dataset", None):
        overrides["data.dataset"] = args.dataset
    if getattr(args, "root", None):
        overrides["data.root"] = str(Path(args.root).resolve())
    return load_config(args.config, overrides)


def cmd_prepare(args: argparse.Namespace) -> int:
    """Load a dataset, build the token cache, write it atomically, print a summary."""
    from xtinyhar.data import load_dataset
    from xtinyhar.preprocess.tokens import build_token_cache, save_token_cache, summarize

    cfg = _load_cfg(args)
    started = time.perf_counter()
    report = load_dataset(cfg, skip_bad=args.skip_bad)
    loaded = time.perf_counter()
    cache = build_token_cache(cfg, report.trials, report.class_names)
    save_token_cache(args.out, cache)
    done = time.perf_counter()
    print(summarize(cache))
    if report.skipped:
        print(f"skipped     {len(report.skipped)} bad trial(s) (--skip-bad); first: {report.skipped[0]}")
    print(f"time        load {loaded - started:.1f} s, prepare + write {done - loaded:.1f} s")
    print(f"wrote       {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xtinyhar", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xtinyhar {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    prep = sub.add_parser("prepare", help="build the token cache (.npz) from a dataset")
    prep.add_argument("--config", required=True, help="YAML config, e.g. configs/utd_mhad.yaml")
    prep.add_argument("--dataset", choices=DATASETS, help="overrides data.dataset")
    prep.add_argument("--root", help="dataset folder; overrides data.root")
    prep.add_argument("--out", required=True, help="where to write the cache, e.g. data_cache/utd_tokens.npz")
    prep.add_argument("--skip-bad", action="store_true",
                      help="skip unreadable or inconsistent trials with a warning instead of failing")
    prep.set_defaults(func=cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except XTinyHARError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
