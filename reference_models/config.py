"""The one training configuration object: every hyperparameter of every method, visible in one place.

A method's presets (``reference_models/<method>.py``) are partial dicts of these fields; the command line
overrides any field (``jembench train jem --lr 1e-4 --sgld-steps 40``). Unknown keys are errors, never
silently ignored. The resolved config is printed at start and stored in the checkpoint and the log folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from jembench.defaults import data_root as default_data_root
from jembench.errors import JembenchError

if TYPE_CHECKING:
    from jembench.sampling import SGLDConfig


def _f(default: Any, help: str, **kw) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # --- what
    method: str = _f("jem", "training method (jem, jempp, sada_jem, softmax, softmax_sam)")
    dataset: str = _f("digits", "dataset name or folder:PATH")
    data_root: str = field(default_factory=default_data_root,  # read at construction: honours $JEMBENCH_DATA
                           metadata={"help": "folder holding torchvision datasets (default: $JEMBENCH_DATA or data)"})
    download: bool = _f(True, "download missing torchvision datasets")
    name: str = _f("", "run name used in records (default <method>-<dataset>)")
    dataset_label: str = _f("", "how tables, figures and records name the dataset (default: the registry's label, "
                                "e.g. 'CIFAR-10'; for folder: datasets the folder name)")
    # --- network (WRN-depth-width; JEM: WRN-28-10 without batch norm)
    depth: int = _f(28, "Wide-ResNet depth (6n+4)")
    width: int = _f(10, "Wide-ResNet widen factor")
    norm: str = _f("none", "normalisation: none, batch, instance, layer")
    dropout: float = _f(0.0, "dropout rate inside residual blocks")
    # --- optimisation
    optimizer: str = _f("adam", "adam or sgd")
    lr: float = _f(1e-4, "initial learning rate")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(0.0, "weight decay")
    epochs: int = _f(150, "passes through the training set")
    max_iters: int = _f(0, "stop after this many iterations (0 = epochs decide)")
    batch_size: int = _f(64, "labelled batch size (and SGLD chains per step, unless px_batch_size)")
    warmup_iters: int = _f(0, "linear learning-rate warm-up iterations")
    # _f gives lists a default_factory, so the shared-mutable-default warning does not apply
    decay_epochs: list = _f([50, 100], "epochs at which the learning rate is multiplied by decay_rate")  # noqa: RUF009
    decay_fractions: list = _f([], "decay points as fractions of the run's iterations instead of epochs "  # noqa: RUF009
                                   "(e.g. 0.8 0.9; the cpu presets compress the paper schedule this way)")
    decay_rate: float = _f(0.3, "learning-rate decay factor")
    # --- data
    augment: bool = _f(True, "random crop (reflect pad) + flip on the p(y|x) data")
    flip: bool = _f(True, "horizontal flips in the augmentation (off for digits)")
    input_noise: float = _f(0.03, "std of Gaussian noise added to training inputs (JEM: .03)")
    px_separate: bool = _f(False, "draw the p(x) images from a second, independently shuffled loader of the same "
                                  "(augmented) training images (JEM / JEM++ code: dload_train vs dload_train_labeled)")
    px_unaugmented: bool = _f(False, "feed the p(x) term un-augmented images from a second loader (SADA-JEM's "
                                     "DA-free p(x); implies px_separate)")
    px_batch_size: int = _f(0, "batch size of the p(x) loader = SGLD chains per step (0 = batch_size; needs "
                               "px_separate or px_unaugmented)")
    holdout: int = _f(0, "training images held out for validation (JEM / JEM++ code: 5,000): the first N of "
                         "range(n_train) shuffled by NumPy with holdout_seed; the rest is the training set")
    holdout_seed: int = _f(1234, "NumPy seed of the hold-out shuffle (JEM / JEM++ code: 1234)")
    select_best: str = _f("none", "also keep best.pt, the checkpoint of highest accuracy on: validation (the "
                                  "hold-out; JEM / JEM++ code), test (SADA-JEM code, which has no hold-out) or none")
    eval_every: int = _f(1, "epochs between the accuracy evaluations that choose best.pt (and at the end)")
    workers: int = _f(0, "data-loader worker processes")
    channels_last: bool = _f(True, "channels-last memory format for 3-channel images (faster convolutions on x86 "
                                   "CPUs and tensor-core GPUs; the same arithmetic)")
    # --- the generative term log p(x) (px_weight 0 = softmax classifier)
    px_weight: float = _f(1.0, "weight of the log p(x) term (0 turns SGLD off)")
    sgld_steps: int = _f(20, "SGLD steps per iteration (K / M in the papers)")
    sgld_step_size: float = _f(1.0, "SGLD step size alpha")
    sgld_noise: float = _f(0.01, "SGLD noise std sigma")
    sgld_grad_clamp: float = _f(0.0, "clamp each SGLD gradient to [-eps, eps] (JEM++ proximal SGLD; 0 = off)")
    sgld_x_clamp: bool = _f(False, "clamp SGLD samples to [-1, 1] after each step")
    sgld_train_mode: bool = _f(False, "run SGLD with the network in train mode: batch norm normalises with the "
                                      "chains' batch statistics (JEM++ / SADA-JEM code); off: eval mode (JEM code)")
    sgld_bn_updates: bool = _f(False, "with sgld_train_mode: every SGLD forward also updates the batch-norm running "
                                      "statistics (momentum .9), as the JEM++ / SADA-JEM code does")
    buffer_size: int = _f(10000, "replay buffer size")
    reinit_freq: float = _f(0.05, "share of chains restarted from p_0 per draw")
    init: str = _f("uniform", "p_0 of the chains: uniform or class_gaussian (JEM++ informative init)")
    # --- sharpness-aware minimisation (SADA-JEM, softmax_sam)
    sam_rho: float = _f(0.0, "SAM neighbourhood radius rho (0 = plain optimiser)")
    sam_adaptive: bool = _f(False, "adaptive SAM (Kwon et al. 2021)")
    # --- divergence guard (reference_models/divergence.py; JEM §6 and App. G.3)
    loss_bound: float = _f(1e8, "a |loss| above this counts as divergence (JEM / JEM++ code stop at 1e8; 0 = off)")
    gap_bound: float = _f(0.0, "an energy gap |E(x_hat) - E(x)| above this counts as divergence (SADA-JEM code "
                               "stops when its p(x) loss term exceeds 1e5; 0 = off)")
    max_recoveries: int = _f(3, "rollbacks allowed before giving up")
    recovery_lr_factor: float = _f(0.5, "multiply the learning rate by this at each rollback (1 = keep)")
    recovery_sgld_factor: float = _f(2.0, "multiply the SGLD steps by this at each rollback (1 = keep)")
    # --- run
    seed: int = _f(0, "seed for torch, numpy and python")
    device: str = _f("cpu", "torch device")
    ckpt_every: int = _f(1, "write a checkpoint every N epochs (and at the end)")
    ckpt_every_iters: int = _f(0, "also write one every N iterations (0 = off)")
    log_every: int = _f(10, "log a CSV row (and check for divergence) every N iterations")
    sample_every: int = _f(0, "save a PNG grid of buffer samples every N iterations (0 = at the end only)")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise JembenchError(f"unknown training option(s) {', '.join(unknown)}; see `jembench train --help`")
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def sgld_config(self) -> SGLDConfig:
        """The SGLD settings of training, in the one type that sampling, generation and refinement share."""
        from jembench.sampling import SGLDConfig

        return SGLDConfig(n_steps=self.sgld_steps, step_size=self.sgld_step_size, noise=self.sgld_noise,
                          grad_clamp=self.sgld_grad_clamp, x_clamp=self.sgld_x_clamp)

    @property
    def run_name(self) -> str:
        from jembench.catalog import slug

        return self.name or f"{self.method}-{slug(self.dataset)}"

    def validate(self) -> None:
        checks = [
            (self.optimizer in ("adam", "sgd"), f"optimizer must be adam or sgd, got {self.optimizer!r}"),
            (self.norm in ("none", "batch", "instance", "layer"),
             f"norm must be none/batch/instance/layer, got {self.norm!r}"),
            (self.init in ("uniform", "class_gaussian"), f"init must be uniform or class_gaussian, got {self.init!r}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.epochs >= 1 or self.max_iters >= 1, "epochs or max_iters must be >= 1"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            ((self.depth - 4) % 6 == 0 and self.depth >= 10, f"depth must be 6n+4 >= 10, got {self.depth}"),
            (self.width >= 1, f"width must be >= 1, got {self.width}"),
            (0 <= self.reinit_freq <= 1, f"reinit_freq must be in [0, 1], got {self.reinit_freq}"),
            (self.sgld_steps >= 0, f"sgld_steps must be >= 0, got {self.sgld_steps}"),
            (self.buffer_size >= 1, f"buffer_size must be >= 1, got {self.buffer_size}"),
            (self.sam_rho >= 0, f"sam_rho must be >= 0, got {self.sam_rho}"),
            (self.ckpt_every >= 1, f"ckpt_every must be >= 1, got {self.ckpt_every}"),
            (self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"),
            (self.px_batch_size >= 0, f"px_batch_size must be >= 0, got {self.px_batch_size}"),
            (self.px_batch_size == 0 or self.px_separate or self.px_unaugmented,
             "px_batch_size needs --px-separate or --px-unaugmented (the p(x) term otherwise reuses the labelled "
             "batch)"),
            (self.holdout >= 0, f"holdout must be >= 0, got {self.holdout}"),
            (self.select_best in ("none", "validation", "test"),
             f"select_best must be none, validation or test, got {self.select_best!r}"),
            (self.select_best != "validation" or self.holdout > 0,
             "select_best validation needs a hold-out (--holdout N > 0)"),
            (self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}"),
            (all(isinstance(f, (int, float)) and 0 < f < 1 for f in self.decay_fractions),
             f"decay_fractions must lie in (0, 1), got {self.decay_fractions}"),
            (all(isinstance(e, (int, float)) and e >= 0 for e in self.decay_epochs),
             f"decay_epochs must be numbers >= 0, got {self.decay_epochs}"),
            (self.sgld_train_mode or not self.sgld_bn_updates, "sgld_bn_updates needs --sgld-train-mode"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (0 <= self.seed < 2**63, f"seed must be in [0, 2**63), got {self.seed}"),
            (self.workers <= 64, f"workers must be <= 64, got {self.workers}"),
            (self.max_iters >= 0, f"max_iters must be >= 0, got {self.max_iters}"),
            (self.loss_bound >= 0 and self.gap_bound >= 0, "loss_bound and gap_bound must be >= 0 (0 = off)"),
            (self.max_recoveries >= 0, f"max_recoveries must be >= 0, got {self.max_recoveries}"),
            (0 < self.recovery_lr_factor <= 1, f"recovery_lr_factor must be in (0, 1], got {self.recovery_lr_factor}"),
            (self.recovery_sgld_factor >= 1, f"recovery_sgld_factor must be >= 1, got {self.recovery_sgld_factor}"),
            (self.sgld_grad_clamp >= 0, f"sgld_grad_clamp must be >= 0, got {self.sgld_grad_clamp}"),
            (self.sample_every >= 0 and self.ckpt_every_iters >= 0, "sample_every and ckpt_every_iters must be >= 0"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
        ]
        for ok, message in checks:
            if not ok:
                raise JembenchError(f"bad training option: {message}")


def resolve_config(method: str, preset: str = "tiny", overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults ← the method's preset for the dataset ← ``overrides`` (any :class:`TrainConfig` field)."""
    from . import get_method

    overrides = dict(overrides or {})
    dataset = overrides.get("dataset", "digits")
    module = get_method(method)
    try:
        values = module.preset(preset, dataset)
    except KeyError:
        raise JembenchError(f"method {method!r} has no preset {preset!r}; use one of "
                            f"{', '.join(module.PRESETS)}") from None
    return TrainConfig.from_dict({**values, "dataset": dataset, **overrides, "method": method})
