"""Fitting the surrogate (``model.Surrogate``) on collected real runs: every part of the model in
its own step (see the model's module doc)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..space import PSI_KEYS
from .model import GP, Surrogate, SurrogateError, logit, sigmoid, to_unit_array


def _curve_matrix(curves: pd.DataFrame, epochs: int, col: str = "val_acc") -> pd.DataFrame:
    """One row per (config_id, seed), columns epochs 1..E of logit(col); full-budget runs only."""
    piv = curves.pivot_table(index=["config_id", "seed"], columns="epoch", values=col, aggfunc="first")
    piv = piv.reindex(columns=range(1, epochs + 1))
    return piv.dropna()


def fit_noise(resid: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Seed-noise model from residuals about per-config means of repeated-seed configs.

    Residuals about a k-seed mean have variance (k-1)/k of the noise: corrected per group.
    Correlation over epochs: ρ_o + (1-ρ_o)·φ^d(i, j), fitted by least squares to the pooled empirical
    correlation matrix, with d the lag in epochs |i − j| or in log epochs |ln i − ln j| (noise that
    decorrelates on the learning curve's own, logarithmic, clock: epochs 1 and 3 are as far apart as
    9 and 27). Both have two parameters; the one with the smaller misfit is used, and both misfits are
    returned."""
    from scipy.optimize import minimize
    E = resid.shape[1]
    ks = pd.Series(groups).map(pd.Series(groups).value_counts()).to_numpy()
    scaled = resid * np.sqrt(ks / (ks - 1.0))[:, None]
    std = scaled.std(axis=0, ddof=0)
    std = np.maximum(std, 1e-4)
    C = np.corrcoef(scaled.T)
    ep = np.arange(1, E + 1, dtype=float)
    lags = {"epochs": np.abs(np.subtract.outer(ep, ep)), "log_epochs": np.abs(np.subtract.outer(np.log(ep), np.log(ep)))}
    fits = {}
    for name, lag in lags.items():
        def model(p, lag=lag):
            rho, phi = sigmoid(p[0]), sigmoid(p[1])
            return rho + (1 - rho) * phi ** lag
        res = minimize(lambda p, model=model: ((model(p) - C) ** 2).sum(), x0=np.array([0.0, 1.0]),
                       method="Nelder-Mead")
        fits[name] = (float(res.fun), model(res.x), res.x)
    best = min(fits, key=lambda k: fits[k][0])
    sse, corr, x = fits[best]
    return std, corr, {"rho_offset": float(sigmoid(x[0])), "phi_ar1": float(sigmoid(x[1])), "lag": best,
                       "misfit_sse": {k: v[0] for k, v in fits.items()}}


def effective_step(psi: pd.DataFrame) -> np.ndarray:
    """log10 of SGD's effective step lr/(1−μ)."""
    return psi["psi_log10_lr"].to_numpy(float) - np.log10(1.0 - psi["psi_momentum"].to_numpy(float))


def _loglik(theta, X, ss, dof):
    # SS_c / σ_c² ~ χ²(dof_c) with log σ_c² = X θ: the seed-noise likelihood with each config's mean profiled out
    ls2 = X @ theta
    return float(np.sum(-0.5 * dof * ls2 - 0.5 * ss * np.exp(-ls2)))


def lr_test(ss: np.ndarray, dof: np.ndarray, X: np.ndarray) -> dict:
    """Likelihood-ratio test of log σ² = a + X·b (heteroscedastic) against log σ² = a (constant)."""
    from scipy.optimize import minimize
    from scipy.stats import chi2
    a0 = float(np.log(ss.sum() / dof.sum()))  # the constant model's MLE, in closed form
    X1 = np.column_stack([np.ones(len(ss)), X])
    l0 = _loglik(np.array([a0]), X1[:, :1], ss, dof)
    res = minimize(lambda t: -_loglik(t, X1, ss, dof), np.r_[a0, np.zeros(X.shape[1])], method="BFGS")
    stat = max(2.0 * (-res.fun - l0), 0.0)
    return {"statistic": float(stat), "df": int(X.shape[1]), "p": float(chi2.sf(stat, X.shape[1])),
            "coef": res.x[1:].tolist(), "intercept": float(res.x[0])}


NOISE_COVARIATES = {"eff_step": "log10 lr/(1-μ)", "level": "the configuration's mean logit val accuracy at that epoch"}


def fit_noise_scale(Y: np.ndarray, groups: np.ndarray, psi_by_cfg: pd.DataFrame,
                    noise_std: np.ndarray, covariate: str = "eff_step") -> tuple[np.ndarray, np.ndarray]:
    """Heteroscedastic seed noise: per epoch, log σ² = a + b·x, fitted by maximum likelihood on the
    repeated-seed configurations (``lr_test``), with x standardized and either

    - ``eff_step``: the configuration's log10 lr/(1−μ) (one value per configuration); the reference is
      (4,) = (mean, std, min, max) over the repeated configurations;
    - ``level``: the configuration's mean logit val accuracy at that epoch (its seeds' mean here, the
      mean curve in simulation); the reference is (E, 4), one row per epoch.

    Returns (E, 2) coefficients of the multiplier on ``noise_std`` (log m² = a − 2 log noise_std + b·x)
    and the reference: x is standardized with its mean and std and clipped to its min and max (no
    extrapolation beyond the measured range)."""
    if covariate not in NOISE_COVARIATES:
        raise ValueError(f"noise covariate must be one of {sorted(NOISE_COVARIATES)}, got {covariate!r}")
    ids = np.unique(groups)
    df = pd.DataFrame(Y, index=groups)
    g = df.groupby(level=0)
    dof = (g.size().loc[ids] - 1).to_numpy(float)
    ss = (g.var(ddof=1).loc[ids].to_numpy() * dof[:, None])
    if covariate == "eff_step":
        x = effective_step(psi_by_cfg.loc[ids])
        ref = np.array([x.mean(), x.std(), x.min(), x.max()])
        X = np.repeat(((x - ref[0]) / ref[1])[:, None], Y.shape[1], axis=1)
    else:
        lv = g.mean().loc[ids].to_numpy()
        ref = np.column_stack([lv.mean(0), lv.std(0), lv.min(0), lv.max(0)])
        X = (lv - ref[:, 0]) / ref[:, 1]
    coef = np.zeros((Y.shape[1], 2))
    for e in range(Y.shape[1]):
        t = lr_test(ss[:, e], dof, X[:, e:e + 1])
        coef[e] = [t["intercept"] - 2.0 * math.log(noise_std[e]), t["coef"][0]]
    return coef, ref


def _misfit_var(gps: list, basis: np.ndarray, trunc: np.ndarray, noise_std: np.ndarray,
                n_seeds: np.ndarray, obs_var: list) -> np.ndarray:
    """Per epoch, the variance of the per-config mean curves' leave-one-out errors that neither the
    GPs' latent LOO variance nor the seed noise of an n-seed mean explains (0 when they explain it
    all). Covers what the ARD GPs miss (misspecification, the truncated SVD components), so the
    predictive intervals for unseen configurations are not too narrow. Uses training data only."""
    resid = np.zeros_like(trunc)
    var = np.zeros_like(trunc)
    for i, g in enumerate(gps):
        r, v = g.loo(obs_var[i])
        resid += r[:, :1] * basis[i][None, :]
        var += v[:, :1] * basis[i][None, :] ** 2
    err = resid + trunc
    seed = noise_std[None, :] ** 2 / n_seeds[:, None]
    return np.clip((err ** 2).mean(0) - var.mean(0) - seed.mean(0), 0.0, None)


def fit_surrogate(curves: pd.DataFrame, hgs: pd.DataFrame, task_name: str, epochs: int, rank: int = 4,
                  seed: int = 0, startup_s: float = 0.0, config_ids: set | None = None,
                  hg_config_ids: set | None = None, time_data: pd.DataFrame | None = None,
                  heteroscedastic_noise: "bool | str | None" = False) -> Surrogate:
    """Fit every part of the surrogate; ``config_ids``/``hg_config_ids`` restrict the training data.

    ``time_data`` (columns psi_*, epoch, epoch_time): epoch times to fit the time model on instead of
    the collected curves' — e.g. a real sweep's, whose trials ran under the sweep's own load (n
    workers on the machine), which is what simulated time must reproduce. ``heteroscedastic_noise``:
    seed noise whose size depends on a covariate (``fit_noise_scale``: ``"eff_step"``, or True, for
    lr/(1−μ); ``"level"`` for the mean accuracy), where the data show it
    (``noise_ceiling.seed_noise_dependence``); False or None: constant."""
    if config_ids is not None:
        curves = curves[curves["config_id"].isin(config_ids)]
    if hg_config_ids is not None:
        hgs = hgs[hgs["hg_config_id"].isin(hg_config_ids)]
    div_runs = curves.groupby(["config_id", "seed"]).agg(div=("diverged", "max"), n=("epoch", "max"))
    ok = curves.merge(div_runs[(div_runs["div"] == 0) & (div_runs["n"] >= epochs)].reset_index()[["config_id", "seed"]])
    psi_by_cfg = curves.groupby("config_id")[[f"psi_{k}" for k in PSI_KEYS]].first()
    curve, meta = _fit_curves(ok, psi_by_cfg, task_name, epochs, rank, seed, heteroscedastic_noise)
    tsrc = curves if time_data is None else time_data
    div_coef, n_div = _fit_divergence(div_runs, psi_by_cfg)
    hg, hg_meta = _fit_hypergrads(hgs, seed)
    meta = {**meta, "n_diverged_runs": n_div,
            "time_model_source": "collected curves" if time_data is None else f"{len(tsrc)} epochs of real sweep trials",
            **hg_meta, "curve_gps": [{"amp": g.amp, "lengthscales": g.ls.tolist(), "noise": g.noise}
                                     for g in curve["curve_gps"]]}
    return Surrogate(task=task_name, epochs=epochs, **curve, **_fit_test(ok), **_fit_time(tsrc),
                     startup_s=float(startup_s), div_coef=div_coef, **hg, meta=meta)


def _fit_curves(ok: pd.DataFrame, psi_by_cfg: pd.DataFrame, task_name: str, epochs: int, rank: int,
                seed: int, heteroscedastic_noise: "bool | str | None" = False) -> tuple[dict, dict]:
    """The mean-curve model (SVD basis, one GP per component, misfit variance) and the seed-noise model,
    from complete non-diverged runs; returns the Surrogate's fields and their meta."""
    V = _curve_matrix(ok, epochs)
    if len(V) < 8:
        raise SurrogateError(f"only {len(V)} complete runs to fit task {task_name!r}; collect at least 8")
    Y = logit(V.to_numpy())
    cfg_ids = V.index.get_level_values("config_id").to_numpy()
    # per-config means (the GP learns the mean curve; seed noise is modelled separately)
    means = pd.DataFrame(Y, index=cfg_ids).groupby(level=0).mean()
    U = to_unit_array(psi_by_cfg.loc[means.index])
    curve_mean = means.to_numpy().mean(axis=0)
    C = means.to_numpy() - curve_mean
    _, sv, vt = np.linalg.svd(C, full_matrices=False)
    rank = min(rank, len(sv))
    basis = vt[:rank]
    scores = C @ basis.T
    explained = float((sv[:rank] ** 2).sum() / (sv ** 2).sum())
    # seed noise on configs with repeated seeds
    counts = pd.Series(cfg_ids).value_counts()
    rep = np.isin(cfg_ids, counts[counts >= 2].index)
    if rep.sum() < 4:
        raise SurrogateError("seed noise needs configurations with >= 2 seeds; the data has none")
    resid = Y[rep] - means.loc[cfg_ids[rep]].to_numpy()
    noise_std, noise_corr, noise_info = fit_noise(resid, cfg_ids[rep])
    # one GP per component (the leading scores are smooth signal, the trailing ones mostly seed noise,
    # so they need their own length scales and noise levels).
    # Seed noise of each config's n-seed mean, projected on each component, is known: the GPs get it
    # as per-config observation noise, so they cannot thread through it (their white noise then
    # only covers misfit)
    n_seeds = pd.Series(cfg_ids).value_counts().loc[means.index].to_numpy()
    cov = noise_corr * np.outer(noise_std, noise_std)
    obs_var = [float(b @ cov @ b) / n_seeds for b in basis]
    curve_gps = [GP.fit(U, scores[:, i:i + 1], seed=seed, obs_var=obs_var[i]) for i in range(rank)]
    misfit_var = _misfit_var(curve_gps, basis, C - scores @ basis, noise_std, n_seeds, obs_var)
    fields = dict(curve_gps=curve_gps, basis=basis, curve_mean=curve_mean, noise_std=noise_std,
                  noise_corr=noise_corr, misfit_var=misfit_var)
    if heteroscedastic_noise:
        cov_name = "eff_step" if heteroscedastic_noise is True else str(heteroscedastic_noise)
        fields["noise_scale_coef"], fields["noise_scale_ref"] = fit_noise_scale(Y[rep], cfg_ids[rep], psi_by_cfg,
                                                                                noise_std, cov_name)
        fields["noise_scale_covariate"] = cov_name
        noise_info = {**noise_info, "heteroscedastic": f"log σ² linear in {NOISE_COVARIATES[cov_name]}, per epoch",
                      "scale_slope_per_epoch": fields["noise_scale_coef"][:, 1].round(4).tolist()}
    meta = {"n_runs": int(len(V)), "n_configs": int(means.shape[0]), "n_repeated_configs": int((counts >= 2).sum()),
            "seeds_per_repeated_config": int(counts.max()), "svd_rank": rank, "svd_explained": explained,
            "noise": noise_info, "misfit_std_final_epoch": float(np.sqrt(misfit_var[-1]))}
    return fields, meta


def _fit_test(ok: pd.DataFrame) -> dict:
    """Test accuracy from val accuracy at the same epoch (measured at rung milestones)."""
    from sklearn.linear_model import LinearRegression
    tv = ok.dropna(subset=["test_acc"])
    lr = LinearRegression().fit(logit(tv[["val_acc"]].to_numpy()), logit(tv["test_acc"].to_numpy()))
    test_resid = logit(tv["test_acc"].to_numpy()) - lr.predict(logit(tv[["val_acc"]].to_numpy()))
    return dict(test_coef=np.array([lr.intercept_, lr.coef_[0]]), test_resid_std=float(np.std(test_resid)))


def _fit_time(tsrc: pd.DataFrame) -> dict:
    """Epoch time: log-normal, mean linear in ψ; epoch 1 carries a warm-up surcharge."""
    from sklearn.linear_model import LinearRegression
    later = tsrc[tsrc["epoch"] > 1]
    Ut = to_unit_array(later)
    lt = np.log(later["epoch_time"].to_numpy())
    tlr = LinearRegression().fit(Ut, lt)
    first = tsrc[tsrc["epoch"] == 1]
    return dict(time_coef=np.concatenate([[tlr.intercept_], tlr.coef_]),
                time_sigma=float(np.std(lt - tlr.predict(Ut))),
                first_epoch_extra=float(np.median(np.log(first["epoch_time"].to_numpy())
                                                  - tlr.predict(to_unit_array(first)))))


def _fit_divergence(div_runs: pd.DataFrame, psi_by_cfg: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Logistic regression of divergence on ψ, or a constant rate when there are too few events for a
    slope; returns the coefficients and the number of diverged runs."""
    from sklearn.linear_model import LogisticRegression
    runs = div_runs.reset_index().merge(psi_by_cfg.reset_index())
    n_div = int(runs["div"].sum())
    if 3 <= n_div <= len(runs) - 3:
        clf = LogisticRegression(C=1.0).fit(to_unit_array(runs), runs["div"].to_numpy())
        return np.concatenate([clf.intercept_, clf.coef_[0]]), n_div
    p = (n_div + 0.5) / (len(runs) + 1.0)  # a half-count prior
    return np.concatenate([[math.log(p / (1 - p))], np.zeros(len(PSI_KEYS))]), n_div


def _fit_hypergrads(hgs: pd.DataFrame, seed: int) -> tuple[dict, dict]:
    """Hyper-gradients: per-config mean and log std over batches as GPs in ψ, and one batch's cost."""
    hcols = [f"hg_{k}" for k in PSI_KEYS]
    hm = hgs.groupby("hg_config_id")[hcols].mean()
    hs = hgs.groupby("hg_config_id")[hcols].std(ddof=1)
    hpsi = hgs.groupby("hg_config_id")[[f"psi_{k}" for k in PSI_KEYS]].first().loc[hm.index]
    Uh = to_unit_array(hpsi)
    fields = dict(hg_mean_gp=GP.fit(Uh, hm.to_numpy(), seed=seed, restarts=1),
                  hg_logsd_gp=GP.fit(Uh, np.log(np.maximum(hs.to_numpy(), 1e-12)), seed=seed, restarts=1),
                  hg_batch_seconds=float(hgs.groupby("hg_config_id")["seconds"].first().median()))
    meta = {"n_hypergrad_configs": int(len(hm)),
            "hypergrad_batches_per_config": int(hgs.groupby("hg_config_id").size().median())}
    return fields, meta
