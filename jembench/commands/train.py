"""``jembench train METHOD``: train a reference model (preset + any hyperparameter override).

The options are generated from :class:`jembench.training.TrainOptions` and
:class:`jembench.reference_models.config.TrainConfig` (:mod:`jembench.options`): each is a keyword of
:func:`jembench.train` of the same name. This module parses them and calls the library; nothing here imports
torch before the arguments are checked.
"""

from __future__ import annotations

import argparse

NAME = "train"
ORDER = 10
HELP = "train a reference model: jem, jempp, sada_jem, softmax, softmax_sam"
DESCRIPTION = ("Train a reference model with a preset (paper hyperparameters, or tiny for a CPU) and optional "
               "overrides of any hyperparameter. Writes OUT/last.pt (checkpoint with weights, replay buffer, "
               "optimizer and RNG states), OUT/log.csv, OUT/config.json and PNG grids of buffer samples. "
               "Under `torchrun --nproc_per_node=K -m jembench train ...` it runs distributed data parallel "
               "(gloo on CPUs, nccl on GPUs; each process its own data and buffer shard; rank 0 writes). "
               "A diverging run is rolled back to its last good state with a lower lr, more SGLD steps and a new "
               "seed (--max-recoveries times; events in OUT/events.jsonl), and its checkpoints and every record "
               "evaluated from them say how often (model.training.recovered_divergences); the official flavour of "
               "each preset (--preset paper-official, ...; --divergence stop) ends at the first divergence as the "
               "official code does: exit 3, last.pt keeps the last good state. "
               "Python: jembench.train(method, ...) takes the same options as keywords (--sgld-steps 40 is "
               "sgld_steps=40).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from jembench.reference_models import available_methods
    from jembench.reference_models.config import TrainConfig

    from .. import options
    from ..training import POSITIONAL, TrainOptions

    p.add_argument("method", choices=available_methods(), help="training method")
    options.add_arguments(p, TrainOptions)
    hyper = p.add_argument_group("hyperparameters (default: from the preset)")
    options.add_arguments(hyper, TrainConfig, skip=POSITIONAL, from_preset=True)


def run(args: argparse.Namespace) -> int:
    from .. import options
    from ..training import config_options, prepare, run_options
    from ..training import run as run_training

    run_opts, config_opts = run_options(), config_options()
    spell = options.cli_spelling(run_opts + config_opts)
    request = prepare(args.method, {o.path: getattr(args, o.name) for o in run_opts},
                      options.argument_changes(args, config_opts), "bad training option", spell)
    from .. import distributed  # torch: only once the arguments are known to be good

    try:
        ckpt = run_training(request)
        main = distributed.is_main()
    finally:
        distributed.cleanup()
    if main:
        print(f"checkpoint: {ckpt}")
    return 0
