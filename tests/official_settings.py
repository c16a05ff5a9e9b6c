"""The official code's settings that jembench's ``*-official`` protocols reproduce, transcribed once, each with the
place it was read from (repository, commit, file, line and the text on that line).

The parity tests compare the shipped protocol files with these values and feed these values — not the
protocol's — to their transcriptions of the official arithmetic, so a wrong value in a protocol file fails even
when the test's transcription is right. ``tests/test_official_settings.py`` reads every cited line from the
official repositories when their mirrors are present (``fetch`` of github:wgrathwohl/JEM, sndnyang/JEMPP,
sndnyang/SADAJEM; ``$JEMBENCH_OFFICIAL_MIRRORS``, default ``/work/.mirror``) and checks that it holds the text and,
for an ``argparse`` default or a JSON entry, the value itself; without the mirrors it is skipped.
Commits: JEM 3d01161 (HEAD), JEMPP fba6ba5 (HEAD) or the historical commit named, SADAJEM 9d8f3c7 (HEAD).
"""

from __future__ import annotations

from dataclasses import dataclass

JEM, JEMPP, SADAJEM = "wgrathwohl/JEM", "sndnyang/JEMPP", "sndnyang/SADAJEM"
HEADS = {JEM: "3d01161", JEMPP: "fba6ba5", SADAJEM: "9d8f3c7"}


@dataclass(frozen=True)
class Cited:
    """``value`` as the official code has it at ``repo``@``commit``:``path``:``line``, whose text contains
    ``text``. ``kind``: ``argparse`` (the line's ``default=``), ``json`` (the line's ``"key": value``) or ``text``
    (the fragment alone: shell commands, expressions)."""

    value: object
    repo: str
    path: str
    line: int
    text: str
    kind: str = "text"
    commit: str = ""

    @property
    def rev(self) -> str:
        return self.commit or HEADS[self.repo]

    def where(self) -> str:
        return f"{self.repo}@{self.rev}:{self.path}:{self.line}"


OFFICIAL: dict[str, Cited] = {
    # ---- evaluation input noise σ (added after Normalize(.5, .5) by every test transform)
    "jem.eval.sigma": Cited(0.03, JEM, "eval_wrn_ebm.py", 428, '"--sigma", type=float, default=3e-2', "argparse"),
    "jempp.eval.sigma": Cited(0.03, JEMPP, "eval_jempp.py", 615, '"--sigma", type=float, default=3e-2', "argparse"),
    # the authors' own OOD runs: scripts/all_ood.sh, only in the repository's history (deleted in 56b7bf3)
    "jempp.all_ood.sigma": Cited(0.0, JEMPP, "scripts/all_ood.sh", 6, "--eval OOD --ood_dataset svhn --sigma 0",
                                 commit="fc345cd"),
    "jempp.all_ood.py": Cited(0.0, JEMPP, "scripts/all_ood.sh", 17, "--score_fn py --sigma 0", commit="fc345cd"),
    "jempp.all_ood.no_pxgrad": Cited(True, JEMPP, "scripts/all_ood.sh", 28, "#python eval_wrn_yopo.py",
                                     commit="fc345cd"),
    "sadajem.eval.sigma": Cited(0.0, SADAJEM, "eval_sadajem.py", 571, '"--sigma", type=float, default=0', "argparse"),
    "sadajem.all_ood.sigma": Cited(0.0, SADAJEM, "scripts/all_ood.sh", 6, "--ood_dataset svhn --sigma 0"),
    # ---- interp: (x + last_batch) / 2 over consecutive batches of the shuffled test loader
    "jem.interp": Cited(0.5, JEM, "eval_wrn_ebm.py", 303, "x_mix = (x + last_batch) / 2 + args.sigma"),
    "jempp.interp": Cited(0.5, JEMPP, "eval_jempp.py", 433, "x_mix = (x + last_batch) / 2 + args.sigma"),
    "sadajem.interp": Cited(0.5, SADAJEM, "eval_sadajem.py", 382, "x_mix = (x + last_batch) / 2 + arg.sigma"),
    # ---- evaluation batch-norm mode: JEM's eval never calls f.eval(); JEM++ / SADA-JEM do
    "jempp.eval.f_eval": Cited("eval", JEMPP, "eval_jempp.py", 573, "f.eval()"),
    "sadajem.eval.f_eval": Cited("eval", SADAJEM, "eval_sadajem.py", 528, "f.eval()"),
    # ---- generation
    "sadajem.gen.is_ratio": Cited(0.1, SADAJEM, "eval_sadajem.py", 549, "ratio=0.1, eval='is')"),
    "sadajem.gen.fid_ratio": Cited(0.9, SADAJEM, "eval_sadajem.py", 550, "ratio=0.9, eval='fid')"),
    "sadajem.gen.is_splits": Cited("max(1, N // 5000)", SADAJEM, "Task/eval_buffer.py", 145,
                                   "splits = max(1, len(feed_imgs) // 5000)"),
    "jempp.gen.is_splits": Cited("max(1, N // 5000)", JEMPP, "Task/eval_buffer.py", 63,
                                 "splits = max(1, len(feed_imgs) // 5000)", commit="9af7fec"),
    "jempp.gen.ratio_default": Cited(100, JEMPP, "eval_jempp.py", 632, '"--ratio", type=int, default=100', "argparse"),
    "jempp.gen.ratio_readme": Cited(10000, JEMPP, "README.md", 47,
                                    "--eval fid --model yopo --norm batch --ratio 10000"),
    "jempp.gen.cifar10_reference": Cited("train+test", JEMPP, "Task/eval_buffer.py", 37,
                                         "Cifar10(args, full=True, noise=False)"),
    "jempp.gen.cifar100_reference": Cited("train", JEMPP, "Task/eval_buffer.py", 34, "Cifar100(args, augment=False)"),
    "jempp.gen.cifar100_train_default": Cited(True, JEMPP, "Task/data.py", 291,
                                              "def __init__(self, FLAGS, train=True, augment=False):"),
    "sadajem.gen.cifar100_reference": Cited("train", SADAJEM, "Task/eval_buffer.py", 88,
                                            "Cifar100(args, augment=False)"),
    # ---- training: the split and input noise that choose best_valid_ckpt.pt; the stopping rules
    "jem.train.sigma": Cited(0.03, JEM, "README.md", 20, "--sigma .03 --width 10 --depth 28"),
    "jem.train.valid_transform": Cited("transform_test", JEM, "train_wrn_ebm.py", 191,
                                       "dataset_fn(True, transform_test),"),
    "jem.train.valid_noise": Cited("sigma", JEM, "train_wrn_ebm.py", 149,  # the last step of transform_test
                                   "lambda x: x + args.sigma * t.randn_like(x)]"),
    "jem.train.select_split": Cited("validation", JEM, "train_wrn_ebm.py", 385,
                                    "correct, loss = eval_classification(f, dload_valid, device)"),
    "jem.train.n_valid": Cited(5000, JEM, "train_wrn_ebm.py", 451, '"--n_valid", type=int, default=5000', "argparse"),
    "jem.train.stop": Cited(1e8, JEM, "train_wrn_ebm.py", 355, "if L.abs().item() > 1e8:"),
    "jem.train.stop_action": Cited("ZeroDivisionError", JEM, "train_wrn_ebm.py", 357, "1/0"),
    "jempp.train.valid_transform": Cited("transform_test", JEMPP, "utils.py", 130,
                                         "dset_valid = DataSubset(dataset_fn(True, transform_test), inds=valid_inds)"),
    "jempp.train.valid_noise": Cited(0.0, JEMPP, "utils.py", 93,  # transform_test (:91-94) ends here: no noise
                                     "tr.Normalize((.5, .5, .5), (.5, .5, .5))]"),
    "jempp.train.select_split": Cited("validation", JEMPP, "train_jempp.py", 317,
                                      "correct, loss = eval_classification(f, dload_valid, 'Valid'"),
    "jempp.train.n_valid": Cited(5000, JEMPP, "train_jempp.py", 383, '"--n_valid", type=int, default=5000',
                                 "argparse"),
    "jempp.train.stop": Cited(1e8, JEMPP, "train_jempp.py", 286, "if L.abs().item() > 1e8:"),
    "jempp.train.stop_action": Cited("return", JEMPP, "train_jempp.py", 290, "return"),
    "sadajem.train.valid_noise": Cited(0.0, SADAJEM, "utils.py", 121,  # transform_test (:119-123): no noise step
                                       "tr.Normalize(mean, std),"),
    "sadajem.train.select_split": Cited("test", SADAJEM, "train_sadajem.py", 276,
                                        "correct, loss = eval_classification(f, dload_test, 'Test'"),
    "sadajem.train.n_valid": Cited(0, SADAJEM, "train_sadajem.py", 370, '"--n_valid", type=int, default=0',
                                   "argparse"),
    "sadajem.train.stop": Cited(1e5, SADAJEM, "train_sadajem.py", 218, "if loss.abs().item() > 1e5:"),
    "sadajem.train.stop_action": Cited("return", SADAJEM, "train_sadajem.py", 222, "return"),
    # ---- JEM's attack (attack_model.py with the README's commands)
    "jem.attack.iterations": Cited(40, JEM, "attack_model.py", 66, '"--n_steps_pgd_attack", type=int, default=40',
                                   "argparse"),
    "jem.attack.n_dup": Cited(5, JEM, "attack_model.py", 70, '"--n_dup_chains", type=int, default=5', "argparse"),
    "jem.attack.sigma": Cited(0.03, JEM, "attack_model.py", 71, '"--sigma", type=float, default=.03', "argparse"),
    "jem.attack.sgld_sigma": Cited(0.01, JEM, "attack_model.py", 69, '"--sgld_sigma", type=float, default=1e-2',
                                   "argparse"),
    "jem.attack.batch_size": Cited(50, JEM, "attack_model.py", 46, "'--batch_size', type=int, default=50", "argparse"),
    "jem.attack.restarts": Cited(20, JEM, "attack_model.py", 254, "for ii in range(20):"),
    "jem.attack.readme_linf": Cited((0, 6, 1), JEM, "README.md", 55,
                                    "--start_batch 0 --end_batch 6 --load_path /PATH/TO/YOUR/MODEL.pt --exp_name "
                                    "/YOUR/EXP/NAME --n_steps_refine 1 --distance Linf"),
    "jem.attack.readme_l2_sigma": Cited(0.0, JEM, "README.md", 59, "--distance L2 --random_init --n_dup_chains 5 "
                                                                   "--sigma 0.0"),
    # ---- SADA-JEM's attack (bpda_eot_attack.py with its shipped json)
    "sadajem.attack.batch_size": Cited(10, SADAJEM, "bpda_eot_attack_jem.json", 10, '"batch_size": 10', "json"),
    "sadajem.attack.batches": Cited(100, SADAJEM, "bpda_eot_attack_jem.json", 14, '"end_batch": 100', "json"),
    "sadajem.attack.seed": Cited(123, SADAJEM, "bpda_eot_attack_jem.json", 18, '"seed": 123', "json"),
    "sadajem.attack.steps": Cited(50, SADAJEM, "bpda_eot_attack_jem.json", 28, '"adv_steps": 50', "json"),
    "sadajem.attack.eta255": Cited(2.0, SADAJEM, "bpda_eot_attack_jem.json", 32, '"adv_eta": 2.0', "json"),
    "sadajem.attack.langevin_steps": Cited(0, SADAJEM, "bpda_eot_attack_jem.json", 43, '"langevin_steps": 0', "json"),
    "sadajem.attack.eps255": Cited((1, 2, 4, 8, 12, 16, 22, 30), SADAJEM, "scripts/bpda_attack.sh", 2,
                                   "for i in {1,2,4,8,12,16,22,30}"),
}


def value(key: str):
    """The transcribed official value ``key``."""
    return OFFICIAL[key].value
