"""``p2pvision benchmark``: methods x data sets x seeds -> tables (mean ± std) and a self-contained HTML report.

``load_benchmark(path)`` reads a config (``config`` module), ``run_benchmark(config, out)`` evaluates the cells
that are not done yet (``engine``); methods are pluggable (``methods``: :class:`Method`, ``register_method``).
"""

# The baselines of the P2P comparison (p2pvision.baselines) register their kinds: blackbox_pixel, realx, soft_mask,
# posthoc_selection.
from p2pvision.benchmark import baseline_methods  # noqa: E402, F401
