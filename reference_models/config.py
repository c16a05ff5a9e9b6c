"""The one training configuration object: every hyperparameter of every method, visible in one place.

:class:`TrainConfig` is a settings class of :mod:`jembench.schema`, like every evaluation protocol: each field
declares its type, default, valid range or choices and help text once, and from that one declaration come the
checks, the ``jembench train`` options and the ``jembench.train`` keywords (:mod:`jembench.options`). The SGLD
chain settings are nested — ``sgld`` is a :class:`jembench.sgld_config.SGLDConfig`, the same type (and the same
field names) as the generation protocol's ``[sgld]`` — and are given as ``--sgld-steps`` / ``sgld_steps=`` etc.

A method's presets (``reference_models/<method>.py``, resolved by :func:`jembench.reference_models.presets.resolve`) are
partial tables of these fields (``{"lr": 1e-4, "sgld": {"n_steps": 20}}``); the command line overrides any field
(``jembench train jem --lr 1e-4 --sgld-steps 40``). Unknown keys are errors, never silently ignored. The resolved
config is printed at start and stored in the checkpoint and the run folder (``config.json``), nested as here;
configs stored flat by earlier versions (``sgld_steps`` ...) are read too (:data:`LEGACY_KEYS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jembench import options, schema
from jembench.defaults import data_root as default_data_root
from jembench.precision import HELP as PRECISION_HELP
from jembench.precision import PRECISIONS
from jembench.runtime import device_name
from jembench.schema import Invalid, setting
from jembench.sgld_config import SGLDConfig

from . import METHOD_MODULES

#: how batch_size is read under torchrun (TrainConfig.ddp_batch)
DDP_BATCHES = ("global", "per-rank")
#: fields of configs written before SGLD was nested → where they live now
LEGACY_KEYS = {"sgld_steps": "n_steps", "sgld_step_size": "step_size", "sgld_noise": "noise",
               "sgld_grad_clamp": "grad_clamp", "sgld_x_clamp": "x_clamp"}


@dataclass(frozen=True)
class TrainConfig:
    # --- what
    method: str = setting("jem", choices=tuple(METHOD_MODULES), help="training method")
    dataset: str = setting("digits", help="dataset name or folder:PATH")
    data_root: str = setting(factory=default_data_root,  # read at construction: honours $JEMBENCH_DATA
                             help="folder holding torchvision datasets (default: $JEMBENCH_DATA or data)")
    download: bool = setting(True, help="download missing torchvision datasets")
    name: str = setting("", help="run name used in records (default <method>-<dataset>)")
    dataset_label: str = setting("", help="how tables, figures and records name the dataset (default: the "
                                          "registry's label, e.g. 'CIFAR-10'; for folder: datasets the folder name)")
    # --- network (WRN-depth-width; JEM: WRN-28-10 without batch norm)
    depth: int = setting(28, ge=10, help="Wide-ResNet depth (6n+4)")
    width: int = setting(10, ge=1, help="Wide-ResNet widen factor")
    norm: str = setting("none", choices=("none", "batch", "instance", "layer"), help="normalisation")
    dropout: float = setting(0.0, ge=0, lt=1, help="dropout rate inside residual blocks")
    # --- optimisation
    optimizer: str = setting("adam", choices=("adam", "sgd"), help="optimiser")
    lr: float = setting(1e-4, gt=0, help="initial learning rate")
    momentum: float = setting(0.9, ge=0, help="SGD momentum")
    weight_decay: float = setting(0.0, ge=0, help="weight decay")
    epochs: int = setting(150, ge=0, help="passes through the training set")
    max_iters: int = setting(0, ge=0, help="stop after this many iterations (0 = epochs decide)")
    batch_size: int = setting(64, ge=1, help="labelled batch size (and SGLD chains per step, unless px_batch_size)")
    warmup_iters: int = setting(0, ge=0, help="linear learning-rate warm-up iterations")
    decay_epochs: tuple[float, ...] = setting((50, 100), ge=0, help="epochs at which the learning rate is "
                                                                     "multiplied by decay_rate")
    decay_fractions: tuple[float, ...] = setting((), gt=0, lt=1, help="decay points as fractions of the run's "
                                                 "iterations instead of epochs (e.g. 0.8 0.9; the cpu presets "
                                                 "compress the paper schedule this way)")
    decay_rate: float = setting(0.3, ge=0, help="learning-rate decay factor")
    # --- data
    augment: bool = setting(True, help="random crop (reflect pad) + flip on the p(y|x) data")
    flip: bool = setting(True, help="horizontal flips in the augmentation (off for digits)")
    input_noise: float = setting(0.03, ge=0, help="std of Gaussian noise added to training inputs (JEM: .03)")
    px_separate: bool = setting(False, help="draw the p(x) images from a second, independently shuffled loader of "
                                            "the same (augmented) training images (JEM / JEM++ code: dload_train vs "
                                            "dload_train_labeled)")
    px_unaugmented: bool = setting(False, help="feed the p(x) term un-augmented images from a second loader "
                                               "(SADA-JEM's DA-free p(x); implies px_separate)")
    px_batch_size: int = setting(0, ge=0, help="batch size of the p(x) loader = SGLD chains per step (0 = "
                                               "batch_size; needs px_separate or px_unaugmented)")
    holdout: int = setting(0, ge=0, help="training images held out for validation (JEM / JEM++ code: 5,000): the "
                                         "first N of range(n_train) shuffled by NumPy with holdout_seed; the rest is "
                                         "the training set")
    holdout_seed: int = setting(1234, ge=0, lt=2**32, help="NumPy seed of the hold-out shuffle (JEM / JEM++ code: "
                                                            "1234)")
    select_best: str = setting("none", choices=("none", "validation", "test"),
                               help="also keep best.pt, the checkpoint of highest accuracy on: validation (the "
                                    "hold-out; JEM / JEM++ code), test (SADA-JEM code, which has no hold-out) or none")
    select_noise: float = setting(0.0, ge=0, help="std of Gaussian noise added to the images that choose best.pt "
                                                  "(JEM code: .03, its validation transform adds --sigma; JEM++ / "
                                                  "SADA-JEM code: 0), drawn afresh at each evaluation from a seeded "
                                                  "stream of its own")
    eval_every: int = setting(1, ge=1, help="epochs between the accuracy evaluations that choose best.pt (and at "
                                            "the end)")
    workers: int = setting(0, ge=0, le=64, help="data-loader worker processes")
    channels_last: bool = setting(True, help="channels-last memory format for 3-channel images (faster convolutions "
                                             "on x86 CPUs and tensor-core GPUs; the same arithmetic)")
    # --- the generative term log p(x) (px_weight 0 = softmax classifier)
    px_weight: float = setting(1.0, ge=0, help="weight of the log p(x) term (0 turns SGLD off)")
    sgld: SGLDConfig = setting(SGLDConfig(), help="the SGLD chains of the p(x) term (JEM Algorithm 1)")
    sgld_train_mode: bool = setting(False, help="run SGLD with the network in train mode: batch norm normalises "
                                                "with the chains' batch statistics (JEM++ / SADA-JEM code); off: "
                                                "eval mode (JEM code)")
    sgld_bn_updates: bool = setting(False, help="with sgld_train_mode: every SGLD forward also updates the "
                                                "batch-norm running statistics (momentum .9), as the JEM++ / "
                                                "SADA-JEM code does")
    buffer_size: int = setting(10000, ge=1, help="replay buffer size")
    reinit_freq: float = setting(0.05, ge=0, le=1, help="share of chains restarted from p_0 per draw")
    init: str = setting("uniform", choices=("uniform", "class_gaussian"),
                        help="p_0 of the chains: uniform or class_gaussian (JEM++ informative init)")
    # --- sharpness-aware minimisation (SADA-JEM, softmax_sam)
    sam_rho: float = setting(0.0, ge=0, help="SAM neighbourhood radius rho (0 = plain optimiser)")
    sam_adaptive: bool = setting(False, help="adaptive SAM (Kwon et al. 2021)")
    # --- divergence guard (reference_models/divergence.py; JEM §6 and App. G.3)
    loss_bound: float = setting(1e8, ge=0, help="a |loss| above this counts as divergence (JEM / JEM++ code stop "
                                                "at 1e8; 0 = off)")
    gap_bound: float = setting(0.0, ge=0, help="an energy gap |E(x_hat) - E(x)| above this counts as divergence "
                                               "(SADA-JEM code stops when its p(x) loss term exceeds 1e5; 0 = off)")
    divergence: str = setting("recover", choices=("recover", "stop"),
                              help="on divergence: recover — roll back to the last good state and retry with the "
                                   "remedies below (the checkpoints and records then say how often); stop — end the "
                                   "run there as the official code does (exit 3; last.pt keeps the last good state; "
                                   "the *-official presets)")
    max_recoveries: int = setting(3, ge=0, help="rollbacks allowed before giving up")
    recovery_lr_factor: float = setting(0.5, gt=0, le=1, help="multiply the learning rate by this at each "
                                                              "rollback (1 = keep)")
    recovery_sgld_factor: float = setting(2.0, ge=1, help="multiply the SGLD steps by this at each rollback "
                                                          "(1 = keep)")
    # --- run
    seed: int = setting(0, ge=0, lt=2**63, help="seed for torch, numpy and python")
    device: str = setting("cpu", convert=device_name, help="torch device: cpu, cuda, cuda:1, mps ...")
    precision: str = setting("fp32", choices=PRECISIONS, help=PRECISION_HELP)
    ddp_batch: str = setting("global", choices=DDP_BATCHES,
                             help="under torchrun: global — batch_size and px_batch_size are totals over all "
                                  "processes, each takes 1/world of them (the papers' batch at the papers' learning "
                                  "rate, as their DataParallel split it); per-rank — each process takes batch_size (a "
                                  "world-times larger batch at the same learning rate: another protocol). The buffer "
                                  "is split either way")
    ckpt_every: int = setting(1, ge=1, help="write a checkpoint every N epochs (and at the end)")
    ckpt_every_iters: int = setting(0, ge=0, help="also write one every N iterations (0 = off)")
    log_every: int = setting(10, ge=1, help="log a CSV row (and check for divergence) every N iterations")
    sample_every: int = setting(0, ge=0, help="save a PNG grid of buffer samples every N iterations (0 = at the "
                                              "end only)")

    def validate(self) -> None:
        """The checks across fields (each field's own range and choices are checked by the schema)."""
        checks = [
            (self.epochs >= 1 or self.max_iters >= 1, "epochs or max_iters must be >= 1"),
            ((self.depth - 4) % 6 == 0, f"depth must be 6n+4 >= 10, got {self.depth}"),
            (self.px_batch_size == 0 or self.px_separate or self.px_unaugmented,
             "px_batch_size needs --px-separate or --px-unaugmented (the p(x) term otherwise reuses the labelled "
             "batch)"),
            (self.select_best != "validation" or self.holdout > 0,
             "select_best validation needs a hold-out (--holdout N > 0)"),
            (self.sgld_train_mode or not self.sgld_bn_updates, "sgld_bn_updates needs --sgld-train-mode"),
        ]
        for ok, message in checks:
            if not ok:
                raise Invalid(message)

    # ------------------------------------------------------------------------------------ conversions
    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "training config") -> TrainConfig:
        """A config from a TOML-shaped table (nested ``sgld``; a flat, earlier-version table is read too), every
        field checked; unknown keys and bad values are one-line :class:`JembenchError` s starting with ``where``."""
        return schema.resolve(cls, upgrade(values), where)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (``sgld`` a sub-table): what ``config.json`` and checkpoints store."""
        return schema.to_dict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """This config with ``changes`` — ``jembench.train`` keywords (``lr=``, ``sgld_steps=``) or whole fields
        (``sgld=SGLDConfig(...)``) — applied and checked."""
        opts = options.options(TrainConfig)
        return schema.replace(self, field_paths(changes), "training config", options.api_spelling(opts))

    @property
    def run_name(self) -> str:
        from jembench.catalog import slug

        return self.name or f"{self.method}-{slug(self.dataset)}"


def field_paths(changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` keyed by field path: ``jembench.train`` keywords (``sgld_steps``) become their path
    (``sgld.n_steps``); field names and dotted paths stay as they are."""
    known = {o.name: o.path for o in options.options(TrainConfig)}
    return {known.get(k, k): v for k, v in changes.items()}


def upgrade(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the flat SGLD keys of earlier versions (:data:`LEGACY_KEYS`) moved into ``sgld``."""
    if not isinstance(values, dict) or not any(k in values for k in LEGACY_KEYS):
        return values
    out = {k: v for k, v in values.items() if k not in LEGACY_KEYS}
    sgld = dict(out.get("sgld") or {}) if isinstance(out.get("sgld"), dict) else {}
    sgld.update({LEGACY_KEYS[k]: v for k, v in values.items() if k in LEGACY_KEYS})
    out["sgld"] = sgld
    return out


def resolve_config(method: str, preset: str = "tiny", overrides: dict[str, Any] | None = None,
                   where: str = "bad training option", spell=schema.toml_spelling) -> TrainConfig:
    """Defaults ← the method's preset for the dataset ← ``overrides`` (``jembench.train`` keywords such as
    ``sgld_steps``, field paths such as ``sgld.n_steps``, or whole fields). The preset's table and the overrides
    are checked as one table."""
    from . import presets

    overrides = field_paths(dict(overrides or {}))
    dataset = overrides.get("dataset", "digits")
    table = presets.resolve(method, preset, dataset if isinstance(dataset, str) else "digits")
    merged = presets.derive(table, **schema.nest({**overrides, "method": method}))
    if not isinstance(dataset, str):  # let the schema name the bad value
        merged["dataset"] = dataset
    return schema.resolve(TrainConfig, merged, where, spell)
