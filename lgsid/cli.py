"""The ``lgsid`` command line. Every subcommand calls the same library function as ``jobs/<step>.py``.

    lgsid <step> --conf conf/local.yaml [--set section.key=value ...]
    lgsid pipeline --conf conf/local.yaml        # every step in pipeline.steps, in order
    lgsid config --conf conf/local.yaml [--explain]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
import warnings

from lgsid.errors import LGSIDError
from lgsid.steps import STEPS, run_step

DEFAULT_CONF = "conf/local.yaml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lgsid", description="Geography-aware semantic IDs (LGSID) pipeline.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--conf", default=os.environ.get("LGSID_CONF", DEFAULT_CONF), help="YAML config (default: %(default)s)")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. negatives.k=16")
        sp.add_argument("--verbose", action="store_true", help="on an error, print the full Python/JVM stack trace, not one line")

    for name, (_, help_) in STEPS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        common(sp)
        if name == "evaluate":
            sp.add_argument("--out", default=None, help="report directory (overrides evaluate.out_dir)")
        if name == "promote":
            sp.add_argument("--version", default=None, help="model version to promote (default: the 'candidate' alias)")
            sp.add_argument("--force", action="store_true", help="promote even when the SID churn exceeds promote.max_sid_churn (= --set promote.force=true)")
    sp = sub.add_parser("pipeline", help="Run every step in pipeline.steps in order.")
    common(sp)
    sp.add_argument("--steps", default=None, help="comma-separated subset of steps (default: pipeline.steps)")
    sp = sub.add_parser("config", help="Print the resolved config (or --explain every key).")
    common(sp)
    sp.add_argument("--explain", action="store_true", help="print every key with its default and help text")
    return p


def _one_line(e: BaseException) -> str:
    """The first non-empty line of an error's message (a JVM error's message, not its stack trace)."""
    try:
        from py4j.protocol import Py4JJavaError
    except ImportError:  # pragma: no cover - py4j ships with pyspark
        Py4JJavaError = ()  # type: ignore[assignment]
    if isinstance(e, Py4JJavaError):
        msg = str(e.java_exception.toString())
    else:
        msg = str(e)
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _classify(e: BaseException) -> int | None:
    """Exit code for an error printed as one line: 2 = user error (bad config/input/path, Spark
    analysis error), 1 = another Spark/JVM failure, None = a bug (let the traceback through).
    pyspark is only inspected when it is already loaded, so ``lgsid config`` stays cheap."""
    if isinstance(e, (LGSIDError, FileNotFoundError)):
        return 2
    if "pyspark" not in sys.modules:
        return None
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import AnalysisException, PySparkException

    if isinstance(e, AnalysisException):
        return 2
    if isinstance(e, (PySparkException, Py4JJavaError)):
        return 1
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lgsid`` console script and of ``jobs/*.py``. Returns the exit code.

    Bad config, bad input and Spark analysis errors (e.g. a path that does not exist) print one
    line ``lgsid: error: <message>`` on stderr and return 2; any other Spark/JVM failure prints one
    line and returns 1. ``--verbose`` prints the full stack trace instead.
    """
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except Exception as e:
        code = _classify(e)
        if code is None:
            raise
        if getattr(args, "verbose", False):
            traceback.print_exc()
        hint = "" if isinstance(e, LGSIDError) or args.verbose else " (--verbose shows the stack trace)"
        print(f"lgsid: error: {_one_line(e)}{hint}", file=sys.stderr, flush=True)
        return code


def _main(args: argparse.Namespace) -> int:
    from lgsid.config import explain, load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # petastorm 0.12 on pyarrow 14 warns about legacy dataset APIs on every reader; not actionable here.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"petastorm(\.|$)")
    for noisy in ("py4j", "urllib3", "alembic", "petastorm", "mlflow", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    overrides = list(args.overrides)
    if getattr(args, "out", None):
        overrides.append(f"evaluate.out_dir={args.out}")
    if getattr(args, "version", None):
        overrides.append(f"promote.version={args.version}")
    if getattr(args, "force", False):
        overrides.append("promote.force=true")
    if args.command == "config":
        if args.explain:
            print(explain())
        else:
            print(json.dumps(load_config(args.conf, overrides).to_dict(), indent=2))
        return 0
    cfg = load_config(args.conf, overrides)
    from lgsid.spark import get_spark

    spark = get_spark(cfg)
    steps = [args.command]
    if args.command == "pipeline":
        steps = args.steps.split(",") if args.steps else list(cfg.pipeline.steps)
    summaries = []
    for step in steps:
        summaries.append(run_step(step, spark, cfg))
        print(summaries[-1].render(), flush=True)
    evaluated = [s for s in summaries if s.step == "evaluate"]
    if len(summaries) > 1 and evaluated and summaries[-1] is not evaluated[-1]:
        print("\n== lgsid pipeline finished; evaluation headline again:", flush=True)
        print(evaluated[-1].render(), flush=True)
    return 0


def job_main(step: str) -> None:
    """What ``jobs/<step>.py`` calls: ``lgsid <step>`` with the job's own command-line arguments."""
    sys.exit(main([step, *sys.argv[1:]]))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
