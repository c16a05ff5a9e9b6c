"""The side-by-side harness (benchmarks/official.py) without an official checkout: timestamp reduction, the
sitecustomize hooks in a real child process, stopping a child's process group, the CIFAR conversion and the
jembench command lines it builds; and the start-up family's import-chain parser."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import official, startup

PY = sys.executable


def test_iteration_times_skip_warmup_and_first_stamp():
    stamps = [10.0, 12.0, 13.5, 14.5, 15.0, 15.25]  # iteration 0 ends at 10.0 (start-up: never counted)
    assert official.iteration_times(stamps, warmup=1, iters=3) == [1.5, 1.0, 0.5]
    assert official.iteration_times(stamps, warmup=0, iters=5) == [2.0, 1.5, 1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="need 6"):
        official.iteration_times(stamps[:5], warmup=2, iters=3)


def test_phase_per_iteration_sums_calls_that_start_inside_each_iteration():
    stamps = [0.0, 1.0, 2.0, 3.0]
    phases = [(0.5, 0.9), (1.1, 1.6), (1.7, 1.8), (2.2, 2.9), (3.5, 3.9)]
    got = official.phase_per_iteration(stamps, phases, warmup=0, iters=3)
    assert got == pytest.approx([0.4, 0.6, 0.7])
    assert official.phase_per_iteration(stamps, phases, warmup=1, iters=2) == pytest.approx([0.6, 0.7])


def test_stamp_and_phase_files_parse(tmp_path):
    (tmp_path / "s").write_text("1.5\n2.5\n")
    (tmp_path / "p").write_text("1.0 1.2\n\n1.3 1.4\n")
    assert official.read_stamps(tmp_path / "s") == [1.5, 2.5]
    assert official.read_phases(tmp_path / "p") == [(1.0, 1.2), (1.3, 1.4)]
    assert official.read_stamps(tmp_path / "missing") == []


TOY = textwrap.dedent("""
    import sys, time
    import torch
    import torchvision.datasets.cifar as cifar

    def sample():                      # wrapped as __main__:sample
        time.sleep(0.02)

    def make_sampler():                # wrapped as __main__:make_sampler:factory
        def inner():
            time.sleep(0.01)
        return inner

    ok = cifar.check_integrity(sys.argv[1], "0" * 32)  # wrong MD5: only a presence check with NO_MD5
    draw = make_sampler()
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=0.1)
    for _ in range(int(sys.argv[2])):
        sample()
        draw()
        (w ** 2).sum().backward()
        opt.step()
    print("md5-check", ok)
""")


def _hook_env(tmp_path: Path, wrap: str, no_md5: bool) -> dict:
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    shutil.copyfile(official.HOOKS, hooks / "sitecustomize.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JEMBENCH_BENCH_")}
    env.update(PYTHONPATH=str(hooks), JEMBENCH_BENCH_STEPS=str(tmp_path / "steps"),
               JEMBENCH_BENCH_PHASES=str(tmp_path / "phases"), JEMBENCH_BENCH_WRAP=wrap, OMP_NUM_THREADS="1")
    if no_md5:
        env["JEMBENCH_BENCH_NO_MD5"] = "1"
    return env


def _run_toy(tmp_path, wrap: str, no_md5: bool, iterations: int) -> subprocess.CompletedProcess:
    """The toy script, unchanged, under the benchmark's sitecustomize hooks; asserts it ran."""
    (tmp_path / "toy.py").write_text(TOY)
    (tmp_path / "data_batch_1").write_bytes(b"not the original")
    out = subprocess.run([PY, str(tmp_path / "toy.py"), str(tmp_path / "data_batch_1"), str(iterations)],
                         env=_hook_env(tmp_path, wrap, no_md5=no_md5), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out


def test_sitecustomize_times_steps_and_wrapped_functions_of_an_unchanged_script(tmp_path):
    out = _run_toy(tmp_path, "__main__:sample,__main__:make_sampler:factory", no_md5=True, iterations=3)
    assert "md5-check True" in out.stdout  # integrity check neutralised from outside
    stamps = official.read_stamps(tmp_path / "steps")
    assert len(stamps) == 3 and stamps == sorted(stamps)
    phases = official.read_phases(tmp_path / "phases")
    assert len(phases) == 6  # 3 x sample (20 ms) + 3 x the factory's function (10 ms)
    durations = sorted(end - start for start, end in phases)
    assert all(d >= 0.009 for d in durations[:3]) and all(d >= 0.019 for d in durations[3:])
    per_it = official.phase_per_iteration([stamps[0] - 10, *stamps], phases, warmup=0, iters=3)
    assert all(0.029 <= s < 1.0 for s in per_it)


def test_sitecustomize_without_no_md5_keeps_torchvisions_check(tmp_path):
    out = _run_toy(tmp_path, "", no_md5=False, iterations=1)
    assert "md5-check False" in out.stdout
    assert len(official.read_stamps(tmp_path / "steps")) == 1


def test_bad_wrap_spec_is_rejected():
    from benchmarks import official_hooks

    assert official_hooks.parse_specs("a:b, c.d:e:factory") == [("a", "b", False), ("c.d", "e", True)]
    with pytest.raises(ValueError):
        official_hooks.parse_specs("a:b:wrapper")


def test_run_child_stops_the_process_group_after_enough_steps(tmp_path):
    (tmp_path / "toy.py").write_text(TOY)
    (tmp_path / "data_batch_1").write_bytes(b"x")
    env = _hook_env(tmp_path, "__main__:sample", no_md5=True)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stamps, phases, first, wall, error = official.run_child(
        [str(tmp_path / "toy.py"), str(tmp_path / "data_batch_1"), "100000"], tmp_path, env, run_dir, needed=4,
        timeout_s=120, wrap="__main__:sample")
    assert error is None
    assert 4 <= len(stamps) < 100000 and first is not None and first <= wall
    assert len(phases) >= 3


def test_run_child_reports_a_failing_child(tmp_path):
    (tmp_path / "bad.py").write_text("raise SystemExit('no such dataset')\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stamps, _, first, _, error = official.run_child([str(tmp_path / "bad.py")], tmp_path, dict(os.environ), run_dir,
                                                    needed=2, timeout_s=60, wrap="")
    assert stamps == [] and first is None
    assert "exited with 1 after 0 step(s)" in error and "no such dataset" in error


def test_convert_cifar_round_trips_through_torchvision(tmp_path):
    import numpy as np
    import torchvision
    from PIL import Image

    src = tmp_path / "jpeg"
    rng = np.random.RandomState(0)
    pixels = {}
    for split, n in (("train", 2), ("test", 1)):
        for c in range(10):
            d = src / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.randint(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")  # lossless, so pixels must survive exactly
                pixels[(split, c, i)] = arr
    root = official.convert_cifar(src, tmp_path / "out")

    class Plain(torchvision.datasets.CIFAR10):
        train_list = [(n, None) for n, _ in torchvision.datasets.CIFAR10.train_list]
        test_list = [(n, None) for n, _ in torchvision.datasets.CIFAR10.test_list]
        meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}

    train, test = Plain(str(root), train=True), Plain(str(root), train=False)
    assert len(train) == 20 and len(test) == 10
    assert train.classes == [f"class{c}" for c in range(10)]
    want = sorted((c, arr.tobytes()) for (s, c, _), arr in pixels.items() if s == "train")
    got = sorted((int(y), x.tobytes()) for x, y in zip(train.data, train.targets))
    assert got == want
    marker = root / "cifar-10-batches-py" / "jembench-source.json"
    stamp = marker.stat().st_mtime_ns
    official.convert_cifar(src, tmp_path / "out")  # cached
    assert marker.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("method", official.METHODS)
def test_jembench_command_line_is_valid_and_matches_the_official_one(method, tmp_path):
    from jembench.cli import build_parser
    from jembench import options
    from jembench.training import config_options
    from jembench.reference_models.config import resolve_config

    cmds = official.commands(method, tmp_path / "checkout", tmp_path / "data", tmp_path / "run", max_iters=12)
    assert cmds["official"][:2] == ["-u", str(tmp_path / "checkout" / official.SCRIPTS[method])]
    off = cmds["official"]
    assert off[off.index("--print_every") + 1] == str(10 ** 7)  # no print iterations (extra SGLD chain)
    argv = cmds["jembench"][3:]  # after "-u -m jembench"
    args = build_parser(argv).parse_args(argv)
    cfg = resolve_config(method, args.preset, options.argument_changes(args, config_options()))
    k = int(off[off.index("--n_steps") + 1])
    assert (cfg.depth, cfg.width, cfg.sgld.n_steps, cfg.max_iters) == (10, 2, k, 12)
    assert cfg.buffer_size == 10000 and cfg.reinit_freq == 0.05 and cfg.workers == 0
    # the same p(x) data pipeline as the official loader: JEM / JEM++ dload_train is the augmented training set
    # (train_wrn_ebm.py:185-193, JEMPP utils.py:128-133), SADA-JEM's p(x) loader is un-augmented (utils.py:141-154)
    assert cfg.px_separate or cfg.px_unaugmented
    assert cfg.px_unaugmented == (method == "sada_jem")
    assert cfg.augment and cfg.flip
    if method == "jem":
        assert (cfg.norm, cfg.batch_size, cfg.sgld.noise, cfg.input_noise, cfg.optimizer) == (
            "none", 64, 0.01, 0.03, "adam")
    else:
        assert cfg.norm == "batch" and cfg.sgld.grad_clamp == 1.0 and cfg.sgld.x_clamp and cfg.sgld.noise == 0
        assert cfg.init == "class_gaussian" and cfg.optimizer == "sgd"
    if method == "sada_jem":
        assert (cfg.batch_size, cfg.px_batch_size, cfg.sam_rho, cfg.sam_adaptive) == (128, 64, 2.0, True)


def test_torch_import_chain_from_importtime_output():
    text = textwrap.dedent("""\
        import time: self [us] | cumulative | imported package
        import time:       100 |        100 |   argparse
        import time:       50 |      50 |         torch._C
        import time:      900 |     9000 |       torch
        import time:       30 |     9030 |     jembench.data
        import time:       20 |     9050 |   jembench.commands.train
        import time:       10 |     9060 | jembench.cli
        """)
    assert startup.torch_import_chain(text) == ["torch", "jembench.data", "jembench.commands.train", "jembench.cli"]
    assert startup.torch_import_chain("import time: 1 | 1 | json\n") == []


def test_startup_child_reports_torch_and_exit_status(tmp_path):
    wall, torch_loaded, rc, _ = startup.run_once(["--help"], tmp_path)
    assert rc == "0" and wall > 0 and isinstance(torch_loaded, bool)
    assert startup.run_once(["no-such-command"], tmp_path)[2] == "2"  # argparse's exit status comes through


def test_lockstep_times_from_release_to_next_step():
    stamps = [10.0, 12.0, 15.0, 16.5]
    go = [11.0, 13.0, 15.5]  # released 1 s after step 0, etc.
    assert official.lockstep_times(stamps, go, warmup=1, iters=2) == [2.0, 1.0]
    assert official.lockstep_phases(go, stamps, [(13.2, 14.0), (14.0, 14.2), (15.6, 15.9), (16.0, 17.0)], 1, 2) == \
        pytest.approx([1.0, 1.3])  # calls that start inside the iteration count whole
    with pytest.raises(ValueError):
        official.lockstep_times(stamps, go, warmup=2, iters=2)


def test_gate_holds_a_child_after_each_step_until_released(tmp_path):
    import time

    (tmp_path / "toy.py").write_text(TOY)
    (tmp_path / "data_batch_1").write_bytes(b"x")
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    fd = os.open(gate, os.O_RDWR)
    env = {**_hook_env(tmp_path, "", no_md5=True), "JEMBENCH_BENCH_GATE": str(gate),
           "JEMBENCH_BENCH_GO": str(tmp_path / "go")}
    proc = subprocess.Popen([PY, str(tmp_path / "toy.py"), str(tmp_path / "data_batch_1"), "4"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stamps_when_settled(n):
        deadline = time.monotonic() + 600  # a loaded 2-core host can take minutes to import torch
        while len(official.read_stamps(tmp_path / "steps")) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a free-running child would make more steps meanwhile
        return len(official.read_stamps(tmp_path / "steps"))

    try:
        assert stamps_when_settled(1) == 1  # parked after its first step
        os.write(fd, b"x")
        assert stamps_when_settled(2) == 2
        os.write(fd, b"x")
        assert stamps_when_settled(3) == 3
    finally:
        os.close(fd)  # gate closed: the child runs on to its end
    assert proc.wait(timeout=600) == 0  # gate closed (EOF): it runs on ungated to its end
    stamps, go = official.read_stamps(tmp_path / "steps"), official.read_stamps(tmp_path / "go")
    assert len(stamps) == 4 and len(go) >= 2
    assert all(s < g < t for s, g, t in zip(stamps, go, stamps[1:]))
