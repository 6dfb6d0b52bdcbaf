"""All fuzz cases: 1,000, seeded, the same on every run; about a fifth of them (chosen by a
hash of their id) form the fast subset that runs unmarked under ``make test``."""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np

from .gen_configs import config_cases
from .gen_data import data_cases
from .gen_flags import flag_cases
from .gen_rundir import rundir_cases
from .harness import Case

TOTAL = 1000
SEED = 20260121
#: Share of cases in the fast subset, in 1/100.
FAST_PERCENT = 24
#: Cases that train for seconds (manifold sets and their evaluation) stay out of the fast set.
SLOW_WORDS = ("airports", "backbone", "quakes", "residues", "demo-steps-2", "reflow", "compile")
RUNDIR_COUNTS = {"modeljson": 70, "weights": 45, "checkpoint": 30, "runfiles": 18}


def _is_fast(case: Case) -> bool:
    if any(w in case.id for w in SLOW_WORDS):
        return False
    return zlib.crc32(case.id.encode()) % 100 < FAST_PERCENT


@lru_cache(maxsize=1)
def all_cases() -> tuple[Case, ...]:
    """The 1,000 cases. The config mutations fill what the other groups leave."""
    rng = np.random.default_rng(SEED)
    fixed = data_cases() + flag_cases() + rundir_cases(rng, RUNDIR_COUNTS)
    whole_file = 4
    n_configs = 16
    per_config = (TOTAL - len(fixed)) // n_configs - 1 - whole_file
    configs = config_cases(np.random.default_rng(SEED + 1), per_config, whole_file)
    cases = fixed + configs
    # fill the remainder with more key mutations of the first configs, then cut to TOTAL
    extra = config_cases(np.random.default_rng(SEED + 2), per_config + 2, 0)
    have = {c.id for c in cases}
    for c in extra:
        if len(cases) >= TOTAL:
            break
        if c.id not in have:
            cases.append(c)
            have.add(c.id)
    cases = cases[:TOTAL]
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        dups = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate fuzz case ids: {dups[:5]}")
    for c in cases:
        c.fast = _is_fast(c)
    return tuple(cases)
