"""``jembench eval``: run evaluation suites on checkpoints (or a model from your code), print paper-style tables,
write JSON records.

The options are generated from :class:`jembench.eval_options.EvalOptions`, each a keyword of
:func:`jembench.evaluate` of the same name; this module parses them, checks the call
(:func:`jembench.eval_options.plan`, before torch is imported) and runs it (:func:`jembench.evaluation.run_plan`).
"""

from __future__ import annotations

import argparse

NAME = "eval"
ORDER = 20
HELP = "evaluate checkpoints (or a model from your code) with standardized suites and write JSON records"
DESCRIPTION = ("Evaluate one or more checkpoints (ours or the official JEM / JEM++ / SADA-JEM code's) — or any "
               "torch.nn.Module "
               "defined in your code (--model package.module:factory [--weights FILE]) — with one or more suites. "
               "Each (model, suite) pair prints a paper-style table and writes a JSON record plus figures (PNG, with "
               "a vector PDF beside each). "
               "Protocols are TOML files shipped with jembench (suites/ in the repository) whose resolved settings' "
               "hash goes into the record. A suite that cannot run (e.g. generation without Inception weights) is "
               "skipped with a note when others run; exit 2 when every requested suite was skipped. Python: "
               "jembench.evaluate(model, suite, ...) takes the same options as keywords (--batch-size 64 is "
               "batch_size=64).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .. import options
    from ..eval_options import EvalOptions
    from ..suites import available_suites

    p.add_argument("checkpoints", nargs="*", metavar="CKPT", help="checkpoint files (.pt)")
    p.add_argument("--model", default=None, metavar="PKG.MODULE:FACTORY",
                   help="evaluate the nn.Module that FACTORY() builds (images in [-1, 1] -> logits) instead of a "
                        "checkpoint; needs --dataset (Python: pass the module as jembench.evaluate's model)")
    p.add_argument("--suite", action="append", default=None,
                   help=f"suite to run, repeatable, or 'all' ({', '.join(available_suites())}); default accuracy")
    options.add_arguments(p, EvalOptions)


def run(args: argparse.Namespace) -> int:
    from ..errors import JembenchError
    from ..eval_options import options_from_arguments, plan

    if bool(args.model) == bool(args.checkpoints):
        raise JembenchError("pass checkpoint files or --model PKG.MODULE:FACTORY (one of the two)")
    opts = options_from_arguments(args)
    if args.model and opts.name is None:  # a module from your code is named after its factory
        import dataclasses

        opts = dataclasses.replace(opts, name=args.model.rpartition(":")[2] or None)
    checked = plan(list(args.checkpoints), args.suite or ["accuracy"], opts, "jembench eval")  # a module: below

    from .. import escape, training_block  # torch from here on: the arguments are known to be good
    from ..evaluation import run_plan
    from ..models import module_from_factory
    from ..suites import get_suite

    if args.model:
        checked = plan([module_from_factory(args.model)], list(checked.suites), opts, "jembench eval")

    def show(record: dict, path, suite: str) -> None:
        # names from the checkpoint / dataset made one line each, so they cannot split the table's rows
        shown = escape.deep(record, escape.one_line)
        print(get_suite(suite).format_table(shown))
        for note in training_block.notes(shown["model"]):  # a run that recovered from divergence says so
            print(f"note: {note}")
        print(f"record: {path}\n")

    run_plan(checked, on_record=show)
    return 0
