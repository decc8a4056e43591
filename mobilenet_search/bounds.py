"""The bounds and names a study's settings accept, and the command line's numbers, without importing anything
(``mobilenet-search --help`` and :mod:`mobilenet_search.results.records` read them: neither may wait for PyTorch).

The upper bounds keep a typo (10^20 epochs, 4,750 noise repeats queued in a minute, a 10,000-digit
budget) from being accepted; each is far above any sensible run.
"""

MAX_PROXY_SIZE = 512  # decoded images are kept in memory: 512 px is already 0.7 GB per 2,624 grey images
# Inclusive bounds of a study's integer settings (search/config.py).
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "epochs": (1, 1000), "batch_size": (2, 4096), "proxy_size": (32, MAX_PROXY_SIZE), "latency_batch": (1, 1024),
    "noise_repeats": (0, 100), "supernet_epochs": (1, 1000), "confirm": (0, 100), "dataset_limit": (2, 10**7),
    "seed": (0, 2**32 - 1),  # what NumPy and PyTorch take as a seed
}
MAX_LR = 10.0
MAX_BUDGET_CHARS = 100  # a 10,000-digit budget would be echoed, stored and reported in full
MAX_BUDGET = {"madds": 10**15, "params": 10**15, "latency": 10**7}  # counts; milliseconds
MAX_SYNTHETIC = 100_000  # synthetic:N images are generated in memory at once (64 px: 3.3 GB at 100,000)
MAX_TRIALS = 1_000_000
MAX_SECONDS = 10**8  # --timeout: three years
MAX_HEARTBEAT = 86_400  # a day
MAX_TOP = 10_000  # fidelity --top
MAX_WIDTH, MAX_RESOLUTION, MAX_CLASSES = 10.0, 8192, 1_000_000  # describe v1/v2

SYNTHETIC_DEFAULT_SIZE = 256  # images of ``synthetic`` without a count
SYNTHETIC_CLASSES = 4  # the synthetic set's classes, in turn: image i is class i % 4
ZERO_COST_PROXIES = ("synflow", "jacob_cov", "snip", "grad_norm")  # measure/zero_cost.py implements each
