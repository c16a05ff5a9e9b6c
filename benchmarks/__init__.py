"""Speed and memory ratios of jembench against the physical limit, measured in one run.

``python -m benchmarks`` (or ``jembench bench``) prints one table (tabulate) and writes it as JSON to
``benchmarks/results/latest.json``. Every ratio is a median over interleaved repeats — numerator and
denominator alternate, same model, same batch, same threads, warm-up excluded — so load from other processes
hits both alike. Families (one module each):

* :mod:`benchmarks.sgld`      SGLD step / bare input-gradient loop; channels-last; ``--compile``
* :mod:`benchmarks.allocator` SGLD step with jembench's glibc allocator setting / glibc's defaults (fresh
                              processes; reported in the ``sgld`` family)
* :mod:`benchmarks.training`  JEM / JEM++ / SADA-JEM iteration / ((K+1) × plain classifier step); loop overhead
* :mod:`benchmarks.suites`    each suite's throughput and peak RSS at N and 4N images (fresh subprocesses)
* :mod:`benchmarks.ddp`       2-process gloo DDP iteration / 1 process on half the batch (torchrun)
* :mod:`benchmarks.startup`   wall time of fresh ``jembench --help`` / ``leaderboard`` / ``check`` / ``report``
                              processes, and whether they imported torch
* :mod:`benchmarks.official`  the official JEM / JEM++ / SADA-JEM trainers (the user's checkouts, run unchanged)
                              against ``jembench train``: s/iter ratio on the same WRN-10-2, data and threads
                              (``--only official --official-jem PATH ...``; not in the default run without paths)

Models: the tiny presets (WRN-10-1 on 8×8 digits) and a WRN-16-4 on 32×32 inputs.
See ``benchmarks/README.md`` for the table as measured on a 2-core CPU and how to run it on a GPU.
"""
