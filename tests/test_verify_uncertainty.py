"""verify's decision on the surrogate's own uncertainty: replicate spread, real against simulated."""
import numpy as np
import pandas as pd

from ohgw_bench.analysis.verify import replicate_spread, uncertainty_decision
from ohgw_bench.space import PSI_KEYS
from ohgw_bench.surrogate.model import Surrogate


def test_spread_test_is_one_sided_for_simulations_narrower_than_real():
    rng = np.random.default_rng(0)
    wide, narrow = pd.Series(rng.normal(0.43, 0.02, 12)), pd.Series(rng.normal(0.43, 0.004, 200))
    a = replicate_spread(wide, narrow)
    assert a["sd_sim"] < a["sd_real"] and a["p_sim_narrower"] < 0.01
    b = replicate_spread(narrow[:12], pd.Series(rng.normal(0.43, 0.02, 200)))
    assert b["sd_sim"] > b["sd_real"] and b["p_sim_narrower"] > 0.5
    assert replicate_spread(wide[:2], narrow)["p_sim_narrower"] is None  # too few replicates to say


def _real_trials(n=30, seed=0):
    rng = np.random.default_rng(seed)
    cols = {f"xp_{k}": v for k, v in zip(PSI_KEYS, [rng.uniform(-3, -0.5, n), rng.uniform(-5, -2, n),
                                                   rng.uniform(0.5, 0.98, n), rng.uniform(0, 20, n),
                                                   rng.uniform(0, 0.2, n)])}
    return pd.DataFrame({"scheduler": "asha", "variant": "baseline", "seed": 0, "trial_id": np.arange(n), **cols})


def test_posterior_draws_are_needed_only_where_a_checked_variant_is_too_narrow(synthetic_surrogate_dir):
    sur = Surrogate.load(synthetic_surrogate_dir)
    rng = np.random.default_rng(1)
    ok = replicate_spread(pd.Series(rng.normal(0.43, 0.01, 12)), pd.Series(rng.normal(0.43, 0.01, 200)))
    narrow = replicate_spread(pd.Series(rng.normal(0.43, 0.03, 12)), pd.Series(rng.normal(0.43, 0.003, 200)))
    hpo = {"asha/baseline": {"spread": ok}, "asha/ohgw": {"spread": narrow}, "pasha/baseline": {"spread": narrow}}
    real = _real_trials()
    d = uncertainty_decision(sur, real, hpo, ["asha/baseline", "asha/ohgw"])
    assert d["needed"] is True and d["narrower"] == ["asha/ohgw"]  # pasha/baseline is not a checked variant
    assert 0 <= d["model_variance_share"]["median"] <= 1 and d["model_variance_share"]["n_configs"] == 30
    assert uncertainty_decision(sur, real, hpo, ["asha/baseline"])["needed"] is False
    assert uncertainty_decision(sur, real, hpo, [])["needed"] is None
