"""Learned surrogate of real runs on one task: low-rank learning curves, seed noise, time, hyper-gradients.

Model, fitted on ``curves.parquet`` and ``hypergrads.parquet`` from ``ohgw-bench collect``:

- mean learning curve: logit(val acc) per epoch, per-config mean over seeds -> SVD basis (r
  components) -> scores predicted from ψ (unit cube) by a Gaussian process with an ARD RBF kernel.
  The GP is smooth in ψ, so a warm start's tiny move of ψ changes the curve by a tiny, smooth amount
  (trees or nearest neighbours, being piecewise constant, would not move at all); what the GPs'
  own variance does not cover of their leave-one-out errors is kept as a per-epoch misfit variance
  and added to predictive intervals for unseen configurations;
- test accuracy: logit(test) = a + b·logit(val) at the same epoch, plus its own residual noise;
- seed noise: multivariate Gaussian over epochs in logit space, epoch-dependent variance and
  correlation ρ_o + (1-ρ_o)·φ^|i-j| (a per-run offset plus AR(1) jitter), fitted on repeated seeds;
- epoch time: log-normal, mean linear in ψ, plus per-(re)start overhead;
- divergence: logistic regression on ψ (constant rate when too few diverged runs);
- hyper-gradients: per component, mean and log-spread over batches as GPs in ψ.

The artifact is ``surrogate.npz`` (arrays) + ``surrogate.json`` (schema version, scalars, sha256 of
the npz, provenance) — no pickled objects, so it survives library upgrades.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import space
from ..atomic import atomic_path
from ..space import PSI_KEYS
from ..tasks import get_task

SCHEMA_VERSION = 3
EPS = 1e-3


def logit(p):
    p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, float)))


def to_unit_array(df: pd.DataFrame, prefix: str = "psi_") -> np.ndarray:
    lo = np.array([d.low for d in space.DIMS])
    w = space.widths()
    return (df[[f"{prefix}{k}" for k in PSI_KEYS]].to_numpy(float) - lo) / w


# ----------------------------------------------------------------------------- exported GP
@dataclass
class GP:
    """ARD-RBF GP posterior (fitted by scikit-learn, stored as arrays): mean and latent std."""
    X: np.ndarray        # (n, d) training inputs
    alpha: np.ndarray    # (n, m) K^-1 (y - mean) / std, normalised targets
    L: np.ndarray        # (n, n) Cholesky factor of K + noise
    amp: float
    ls: np.ndarray       # (d,)
    y_mean: np.ndarray   # (m,)
    y_std: np.ndarray    # (m,)
    noise: float

    @classmethod
    def fit(cls, X: np.ndarray, Y: np.ndarray, seed: int = 0, restarts: int = 3,
            obs_var: np.ndarray | None = None) -> "GP":
        """``obs_var`` (n,): known noise variance of each target (target units), e.g. the seed noise of
        an n-seed mean; the fitted white noise then only covers what it does not explain."""
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
        Y = np.asarray(Y, float).reshape(len(X), -1)
        d = X.shape[1]
        kern = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.full(d, 0.5), (2e-2, 1e2)) + WhiteKernel(1e-2, (1e-6, 1.0))
        alpha = 1e-10
        if obs_var is not None:  # sklearn adds alpha to the diagonal in normalised units
            alpha = np.asarray(obs_var, float) / max(float(np.std(Y[:, 0])), 1e-12) ** 2 + 1e-10
        gpr = GaussianProcessRegressor(kern, alpha=alpha, normalize_y=True, n_restarts_optimizer=restarts,
                                       random_state=seed)
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        with warnings.catch_warnings():  # hyperparameters at a bound are expected (irrelevant dimensions)
            warnings.simplefilter("ignore", ConvergenceWarning)
            gpr.fit(X, Y)
        k = gpr.kernel_
        amp, ls, noise = float(k.k1.k1.constant_value), np.atleast_1d(k.k1.k2.length_scale).astype(float), \
            float(k.k2.noise_level)
        return cls(X=np.asarray(X, float), alpha=np.asarray(gpr.alpha_, float).reshape(len(X), -1),
                   L=np.asarray(gpr.L_, float), amp=amp, ls=ls,
                   y_mean=np.atleast_1d(gpr._y_train_mean).astype(float),
                   y_std=np.atleast_1d(gpr._y_train_std).astype(float), noise=noise)

    def _k(self, Xs: np.ndarray) -> np.ndarray:
        a = Xs[:, None, :] / self.ls
        b = self.X[None, :, :] / self.ls
        return self.amp * np.exp(-0.5 * ((a - b) ** 2).sum(-1))

    def predict(self, Xs: np.ndarray, return_std: bool = False):
        Xs = np.atleast_2d(np.asarray(Xs, float))
        ks = self._k(Xs)
        mean = ks @ self.alpha * self.y_std + self.y_mean
        if not return_std:
            return mean
        from scipy.linalg import solve_triangular
        v = solve_triangular(self.L, ks.T, lower=True)
        var = np.clip(self.amp - (v ** 2).sum(0), 0.0, None)
        return mean, np.sqrt(var)[:, None] * self.y_std[None, :]

    def loo(self, obs_var: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form leave-one-out (Rasmussen & Williams §5.4.2): residuals y_i - μ_{-i}(x_i) and
        the latent (noise-free) LOO variances, both (n, m) in target units; ``obs_var`` as in fit."""
        from scipy.linalg import cho_solve
        Kinv_diag = np.diag(cho_solve((self.L, True), np.eye(len(self.X))))
        resid = self.alpha / Kinv_diag[:, None] * self.y_std[None, :]
        known = 0.0 if obs_var is None else np.asarray(obs_var, float)[:, None] / self.y_std[None, :] ** 2
        var = np.clip(1.0 / Kinv_diag[:, None] - self.noise - known, 0.0, None) * self.y_std[None, :] ** 2
        return resid, var

    def predict_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean (m,) at one point x (d,) and its gradient (m, d) with respect to x."""
        x = np.asarray(x, float)
        diff = (x[None, :] - self.X) / self.ls ** 2            # (n, d)
        k = self.amp * np.exp(-0.5 * (((x[None, :] - self.X) / self.ls) ** 2).sum(-1))  # (n,)
        mean = (k @ self.alpha) * self.y_std + self.y_mean
        grad = -(self.alpha.T * self.y_std[:, None]) @ (k[:, None] * diff)
        return mean, grad

    def to_arrays(self, prefix: str) -> dict:
        return {f"{prefix}.{k}": np.asarray(getattr(self, k), float) for k in
                ("X", "alpha", "L", "amp", "ls", "y_mean", "y_std", "noise")}

    @classmethod
    def from_arrays(cls, z, prefix: str) -> "GP":
        g = {k: z[f"{prefix}.{k}"] for k in ("X", "alpha", "L", "amp", "ls", "y_mean", "y_std", "noise")}
        return cls(X=g["X"], alpha=g["alpha"], L=g["L"], amp=float(g["amp"]), ls=g["ls"], y_mean=g["y_mean"],
                   y_std=g["y_std"], noise=float(g["noise"]))


# ----------------------------------------------------------------------------- the surrogate
class SurrogateError(ValueError):
    pass


@dataclass
class Surrogate:
    task: str
    epochs: int
    curve_gps: list              # one GP per SVD component: ψ -> score
    basis: np.ndarray            # (r, epochs)
    curve_mean: np.ndarray       # (epochs,) mean logit curve
    noise_std: np.ndarray        # (epochs,) seed-noise std in logit space
    noise_corr: np.ndarray       # (epochs, epochs)
    misfit_var: np.ndarray       # (epochs,) mean-curve error beyond the GP's own variance (LOO estimate)
    test_coef: np.ndarray        # (2,) logit(test) = a + b logit(val)
    test_resid_std: float
    time_coef: np.ndarray        # (d+1,) log epoch time = c0 + c·ψunit
    time_sigma: float
    first_epoch_extra: float     # log-ratio of epoch 1's time (warm-up)
    startup_s: float             # per (re)start overhead of a real trial process
    div_coef: np.ndarray         # (d+1,) logistic regression; all-zero slope: constant rate
    hg_mean_gp: GP               # ψ -> mean hyper-gradient (5)
    hg_logsd_gp: GP              # ψ -> log std over batches (5)
    hg_batch_seconds: float      # real cost of one hyper-gradient batch (all five components)
    meta: dict
    # heteroscedastic seed noise (``fit.fit_noise_scale``; None: constant): (epochs, 2) coefficients of
    # log multiplier² on noise_std, linear in the standardized log10 lr/(1−μ); (4,) its reference
    noise_scale_coef: "np.ndarray | None" = None
    noise_scale_ref: "np.ndarray | None" = None
    # what x is: "eff_step" (log10 lr/(1−μ), ref (4,)) or "level" (the mean logit curve at the epoch,
    # ref (epochs, 4))
    noise_scale_covariate: str = "eff_step"
    # sha256 of surrogate.json's content (which names the npz's sha256): identifies the whole artifact
    checksum: str = ""
    # what simulations depend on: the arrays, the scalars and the per-runner start-up calibration,
    # not the fidelity figures and provenance in meta (a results store is keyed on this)
    model_checksum: str = ""
    # whether surrogate.json carried that checksum, so that its scalars and meta were checked on load
    # (artifacts written before it was recorded load with this False)
    content_checked: bool = False

    # ------------------------------------------------------------ prediction
    def mean_logit_curve(self, U: np.ndarray, return_std: bool = False):
        """(n, epochs) mean logit(val acc) at unit-cube ψ, and optionally its latent std per epoch."""
        if return_std:
            preds = [g.predict(U, return_std=True) for g in self.curve_gps]
            s = np.concatenate([p[0] for p in preds], axis=1)
            sd = np.concatenate([p[1] for p in preds], axis=1)
            # independent scores: their latent variances map to epochs through the squared basis
            curve_sd = np.sqrt((sd ** 2) @ (self.basis ** 2))
            return self.curve_mean + s @ self.basis, curve_sd
        s = np.concatenate([g.predict(U) for g in self.curve_gps], axis=1)
        return self.curve_mean + s @ self.basis

    def predictive_logit(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean logit curve and the std of its error for an unseen configuration: the GPs' latent
        std plus the misfit the GPs' own variance does not cover (LOO-estimated at fit time).
        Seed noise comes on top of this."""
        mu, sd = self.mean_logit_curve(U, return_std=True)
        return mu, np.sqrt(sd ** 2 + self.misfit_var[None, :])

    # ------------------------------------------------------------ oracle warm starts
    def mean_logit_at(self, U: np.ndarray, epoch: int) -> np.ndarray:
        """(n,) mean logit(val acc) at ``epoch`` (1-based) for unit-cube points U (n, d). The oracle
        evaluates many candidates per trial, so the kernel comes from scipy's cdist (several times
        faster than ``GP.predict``'s broadcast, equal to rounding)."""
        from scipy.spatial.distance import cdist
        U = np.atleast_2d(np.asarray(U, float))
        out = np.full(len(U), float(self.curve_mean[epoch - 1]))
        for i, g in enumerate(self.curve_gps):
            k = g.amp * np.exp(-0.5 * cdist(U / g.ls, g.X / g.ls, "sqeuclidean"))
            out += ((k @ g.alpha)[:, 0] * g.y_std[0] + g.y_mean[0]) * self.basis[i, epoch - 1]
        return out

    def mean_logit_grad(self, u: np.ndarray, epoch: int) -> tuple[float, np.ndarray]:
        """Mean logit(val acc) at ``epoch`` for one unit-cube point u and its gradient in u."""
        val, grad = float(self.curve_mean[epoch - 1]), np.zeros(len(u))
        for i, g in enumerate(self.curve_gps):
            m, dm = g.predict_grad(u)
            val += float(m[0]) * self.basis[i, epoch - 1]
            grad += dm[0] * self.basis[i, epoch - 1]
        return val, grad

    def best_in_ball(self, u0: np.ndarray, radius: float, epoch: int, rng: np.random.Generator,
                     n_dirs: int = 64) -> np.ndarray:
        """The unit-cube point of highest predicted mean accuracy at ``epoch`` within the ball of
        ``radius`` around u0, intersected with the cube.

        Candidates: u0 and ``n_dirs`` random directions (from ``rng``, so paired variants draw the same
        ones) at the full and at half the radius, clipped to the cube (clipping towards a centre inside
        the cube never lengthens a step, so candidates stay in the ball); then SLSQP with the analytic
        gradient from the best candidate. The better of the two is returned (logit is monotone in
        accuracy, so the logit is maximised)."""
        from scipy.optimize import minimize
        u0 = np.asarray(u0, float)
        d = rng.standard_normal((n_dirs, len(u0)))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        cand = np.clip(np.concatenate([u0[None], u0 + radius * d, u0 + 0.5 * radius * d]), 0.0, 1.0)
        vals = self.mean_logit_at(cand, epoch)
        best = int(np.argmax(vals))
        u_best, v_best = cand[best], float(vals[best])

        def neg(u):
            v, g = self.mean_logit_grad(u, epoch)
            return -v, -g

        res = minimize(neg, u_best, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * len(u0),
                       constraints=[{"type": "ineq", "fun": lambda u: radius ** 2 - ((u - u0) ** 2).sum(),
                                     "jac": lambda u: -2.0 * (u - u0)}],
                       options={"maxiter": 30, "ftol": 1e-9})
        u = np.clip(res.x, 0.0, 1.0)
        n = float(np.linalg.norm(u - u0))
        if n > radius:  # SLSQP may end marginally outside its constraint
            u = np.clip(u0 + (u - u0) * (radius / n), 0.0, 1.0)
        v = float(self.mean_logit_at(u[None], epoch)[0])
        return u if v > v_best else u_best

    def milestones(self) -> list[int]:
        """The rung levels of the surrogate's task within its epochs (``Task.milestones``): the epochs at
        which per-rung figures are reported."""
        return get_task(self.task).replace(max_epochs=self.epochs).milestones()

    def epoch_log_time(self, U: np.ndarray) -> np.ndarray:
        return self.time_coef[0] + U @ self.time_coef[1:]

    def p_diverge(self, U: np.ndarray) -> np.ndarray:
        return sigmoid(self.div_coef[0] + U @ self.div_coef[1:])

    def noise_scale(self, U: np.ndarray, mu: "np.ndarray | None" = None) -> np.ndarray:
        """(n, epochs) multipliers of ``noise_std`` at unit-cube points U: 1 for a constant seed-noise
        model, else exp(½(a_e + b_e·x)) with x standardized and clipped to the range the noise model was
        fitted on: log10 lr/(1−μ), or the mean logit curve at each epoch (``mu``, computed if not given)."""
        U = np.atleast_2d(U)
        if self.noise_scale_coef is None:
            return np.ones((len(U), self.epochs))
        c = self.noise_scale_coef
        if self.noise_scale_covariate == "level":
            mu = self.mean_logit_curve(U) if mu is None else np.atleast_2d(mu)
            ref = self.noise_scale_ref
            xs = (np.clip(mu, ref[:, 2], ref[:, 3]) - ref[:, 0]) / ref[:, 1]
            return np.exp(0.5 * (c[None, :, 0] + c[None, :, 1] * xs))
        psi = [space.from_unit(u) for u in U]
        x = np.array([p["log10_lr"] - math.log10(1.0 - p["momentum"]) for p in psi])
        mean, std, lo, hi = self.noise_scale_ref
        xs = (np.clip(x, lo, hi) - mean) / std
        return np.exp(0.5 * (c[None, :, 0] + c[None, :, 1] * xs[:, None]))

    def sample_run(self, psi: dict, rng: np.random.Generator) -> dict:
        """One simulated full-budget run at ψ: val/test accuracy and epoch times for every epoch."""
        U = space.to_unit(psi)[None]
        mu = self.mean_logit_curve(U)[0]
        chol = np.linalg.cholesky(self.noise_corr + 1e-9 * np.eye(self.epochs))
        z = chol @ rng.standard_normal(self.epochs) * self.noise_std * self.noise_scale(U, mu[None])[0]
        val_logit = mu + z
        test_logit = self.test_coef[0] + self.test_coef[1] * val_logit + rng.standard_normal() * self.test_resid_std
        lt = self.epoch_log_time(U)[0] + self.time_sigma * rng.standard_normal(self.epochs)
        lt[0] += self.first_epoch_extra
        diverged_at = 0
        if rng.random() < float(self.p_diverge(U)[0]):
            diverged_at = int(rng.integers(1, self.epochs + 1))
        return {"val_acc": sigmoid(val_logit), "test_acc": sigmoid(test_logit), "epoch_time": np.exp(lt),
                "diverged_at": diverged_at}

    def hypergrad(self, psi: dict, n_batches: int, rng: np.random.Generator) -> np.ndarray:
        """(n_batches, 5) simulated per-batch raw hyper-gradients at ψ."""
        U = space.to_unit(psi)[None]
        m = self.hg_mean_gp.predict(U)[0]
        sd = np.exp(self.hg_logsd_gp.predict(U)[0])
        return m + sd * rng.standard_normal((n_batches, len(PSI_KEYS)))

    def for_runner(self, runner: str | None) -> "Surrogate":
        """This surrogate with the per-(re)start overhead of trial runner ``runner`` ("local" or
        "persistent"; None keeps ``startup_s``), from ``meta["startup_s_by_runner"]`` (written by
        ``ohgw-bench fit --overhead-from``), its epoch-time scale and, where the runner's calibration
        sweeps ran warm starts, its seconds per hyper-gradient batch. An artifact without those
        entries holds LocalBackend's only."""
        if runner is None:
            return self
        cal = self.meta.get("startup_s_by_runner") or {"local": self.startup_s}
        if runner not in cal:
            raise SurrogateError(f"sweep config key 'runner': the surrogate holds no start-up calibration for "
                                 f"runner={runner!r} (it has {sorted(cal)}); refit it with `ohgw-bench fit "
                                 f"--overhead-from` a real sweep of that runner, or set runner to one of those")
        import dataclasses
        scale = (self.meta.get("epoch_time_scale_by_runner") or {}).get(runner, 1.0)
        coef = np.array(self.time_coef, float)
        coef[0] += math.log(float(scale))   # log epoch time = c0 + c·ψ: a runner's scale shifts c0
        hg = (self.meta.get("hg_batch_seconds_by_runner") or {}).get(runner, self.hg_batch_seconds)
        return dataclasses.replace(self, startup_s=float(cal[runner]), time_coef=coef, hg_batch_seconds=float(hg))

    def epoch_time_scale(self, epoch_times: pd.DataFrame) -> float:
        """exp(median residual of log epoch time) of real epochs against this time model, after each
        trial's first epoch is left out (it carries warm-up): how much faster or slower another
        runner's epochs are on the same configurations."""
        t = epoch_times[epoch_times["epoch"] > 1]
        U = to_unit_array(t)
        resid = np.log(t["epoch_time"].to_numpy(float)) - self.epoch_log_time(U)
        return float(np.exp(np.median(resid)))

    # ------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays = {"basis": self.basis, "curve_mean": self.curve_mean, "noise_std": self.noise_std,
                  "noise_corr": self.noise_corr, "misfit_var": self.misfit_var, "test_coef": self.test_coef,
                  "time_coef": self.time_coef, "div_coef": self.div_coef}
        if self.noise_scale_coef is not None:
            arrays.update(noise_scale_coef=self.noise_scale_coef, noise_scale_ref=self.noise_scale_ref)
        for i, g in enumerate(self.curve_gps):
            arrays.update(g.to_arrays(f"curve_gp{i}"))
        arrays.update(self.hg_mean_gp.to_arrays("hg_mean_gp"))
        arrays.update(self.hg_logsd_gp.to_arrays("hg_logsd_gp"))
        import io
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: np.asarray(v, float) for k, v in sorted(arrays.items())})
        blob = buf.getvalue()
        scalars = {"schema_version": SCHEMA_VERSION, "task": self.task, "epochs": self.epochs,
                   "test_resid_std": self.test_resid_std, "time_sigma": self.time_sigma,
                   "first_epoch_extra": self.first_epoch_extra, "startup_s": self.startup_s,
                   "hg_batch_seconds": self.hg_batch_seconds, "npz_sha256": hashlib.sha256(blob).hexdigest(),
                   "meta": self.meta}
        if self.noise_scale_coef is not None and self.noise_scale_covariate != "eff_step":
            scalars["noise_scale_covariate"] = self.noise_scale_covariate  # older artifacts: eff_step
        scalars["content_sha256"] = content_sha256(scalars)
        self.checksum, self.content_checked = scalars["content_sha256"], True
        self.model_checksum = model_sha256(scalars)
        for name, data in (("surrogate.npz", blob), ("surrogate.json", json.dumps(scalars, indent=2,
                                                                                   sort_keys=True).encode())):
            with atomic_path(d / name) as tmp:
                tmp.write_bytes(data)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "Surrogate":
        d = Path(directory)
        js, npz = d / "surrogate.json", d / "surrogate.npz"
        if not js.exists() or not npz.exists():
            raise SurrogateError(f"surrogate directory {str(d)!r} lacks surrogate.json/surrogate.npz "
                                 f"(run `ohgw-bench fit {d}`)")
        try:
            s = json.loads(js.read_text())
        except json.JSONDecodeError as e:
            raise SurrogateError(f"surrogate file {str(js)!r} is not valid JSON ({e.msg})") from None
        if s.get("schema_version") != SCHEMA_VERSION:
            raise SurrogateError(f"surrogate {str(d)!r} has schema_version={s.get('schema_version')!r}, "
                                 f"this ohgw-bench reads {SCHEMA_VERSION}; refit it with `ohgw-bench fit {d}`")
        blob = npz.read_bytes()
        if hashlib.sha256(blob).hexdigest() != s.get("npz_sha256"):
            raise SurrogateError(f"surrogate file {str(npz)!r} does not match the checksum in surrogate.json "
                                 f"(corrupt or edited); refit it with `ohgw-bench fit {d}`")
        content = content_sha256(s)
        if "content_sha256" in s and s["content_sha256"] != content:
            raise SurrogateError(f"surrogate file {str(js)!r} does not match its content_sha256 (edited after "
                                 f"fitting); refit it with `ohgw-bench fit {d}`")
        if s.get("noise_scale_covariate", "eff_step") not in ("eff_step", "level"):
            raise SurrogateError(f"surrogate file {str(js)!r} has noise_scale_covariate="
                                 f"{s['noise_scale_covariate']!r}; this ohgw-bench knows 'eff_step' and 'level'")
        import io
        with np.load(io.BytesIO(blob)) as z:
            z = {k: z[k] for k in z.files}
        rank = int(z["basis"].shape[0])
        return cls(task=s["task"], epochs=int(s["epochs"]),
                   curve_gps=[GP.from_arrays(z, f"curve_gp{i}") for i in range(rank)],
                   basis=z["basis"], curve_mean=z["curve_mean"], noise_std=z["noise_std"],
                   noise_corr=z["noise_corr"], misfit_var=z["misfit_var"], test_coef=z["test_coef"],
                   test_resid_std=float(s["test_resid_std"]),
                   time_coef=z["time_coef"], time_sigma=float(s["time_sigma"]),
                   first_epoch_extra=float(s["first_epoch_extra"]), startup_s=float(s["startup_s"]),
                   div_coef=z["div_coef"], hg_mean_gp=GP.from_arrays(z, "hg_mean_gp"),
                   hg_logsd_gp=GP.from_arrays(z, "hg_logsd_gp"), hg_batch_seconds=float(s["hg_batch_seconds"]),
                   meta=s.get("meta", {}), noise_scale_coef=z.get("noise_scale_coef"),
                   noise_scale_ref=z.get("noise_scale_ref"),
                   noise_scale_covariate=str(s.get("noise_scale_covariate", "eff_step")), checksum=content, content_checked="content_sha256" in s,
                   model_checksum=model_sha256(s))


def predictive_samples(sur: Surrogate, U: np.ndarray, n: int, rng: np.random.Generator,
                       include_model: bool = True) -> np.ndarray:
    """(n, configs, epochs) samples of val accuracy: mean-curve uncertainty (GP latent + LOO misfit)
    + seed noise."""
    mu, sd = sur.predictive_logit(U)
    chol = np.linalg.cholesky(sur.noise_corr + 1e-9 * np.eye(sur.epochs))
    scale = sur.noise_scale(U, mu)[None] if getattr(sur, "noise_scale_coef", None) is not None else 1.0
    z = rng.standard_normal((n, U.shape[0], sur.epochs)) @ chol.T * sur.noise_std * scale
    m = rng.standard_normal((n, U.shape[0], 1)) * sd[None] if include_model else 0.0
    return sigmoid(mu[None] + m + z)


def model_sha256(doc: dict) -> str:
    """sha256 of what a simulation reads from surrogate.json: every scalar (the npz's checksum among
    them) and ``meta["startup_s_by_runner"]``; the rest of meta (fidelity figures, calibration stores)
    is left out, so refitting the report of an unchanged model does not invalidate simulations."""
    body = {k: v for k, v in doc.items() if k not in ("content_sha256", "meta")}
    for k in ("startup_s_by_runner", "epoch_time_scale_by_runner", "hg_batch_seconds_by_runner"):
        body[k] = (doc.get("meta") or {}).get(k)
    return content_sha256(body)


def content_sha256(doc: dict) -> str:
    """sha256 of surrogate.json's content without its own checksum, in a canonical form (sorted keys,
    no whitespace), so that it does not depend on how the file is indented."""
    body = {k: v for k, v in doc.items() if k != "content_sha256"}
    # through JSON first: the file's text is what is checked, and JSON turns integer keys into strings,
    # which then sort differently ({2, 10} vs {"10", "2"})
    body = json.loads(json.dumps(body))
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
