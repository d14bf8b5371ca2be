"""One entry point: ``hamner <command>``."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys

from hamner.errors import HamnerError

log = logging.getLogger("hamner")


def _setup_logging(verbose: bool) -> None:
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level if rank == 0 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("transformers", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_train(args: argparse.Namespace) -> int:
    from hamner.training.config import load_config
    from hamner.training.trainer import run_training

    overrides = list(args.set or [])
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    cfg = load_config(args.config, overrides)
    final = run_training(cfg, resume=args.resume, command="hamner " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    if final:
        print(f"test F1 {final['test_f1']:.4f} (best dev epoch {final['best_epoch']}); run: {cfg.run_dir()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hamner", description="Multimodal NER for tweets (HamLearning).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a tagger from a YAML config")
    p.add_argument("--config", required=True, help="configs/<name>.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. train.seed=2")
    p.add_argument("--data-root", help="folder with twitter2015/ and twitter2017/ (default: $HAMNER_DATA_ROOT)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last finished epoch")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except HamnerError as exc:
        print(f"hamner {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
