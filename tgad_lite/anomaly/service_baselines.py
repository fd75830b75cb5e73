"""Per-service risk baselines behind one interface: what a temporal graph model must beat.

Every model here is a :class:`ServiceRiskModel` working on windows of service telemetry (see
:mod:`tgad_lite.data.microservices.windows`):

- ``fit(x [B, S, N, F], mask [B, S, N, F], labels [B, N]) -> self``; ``x`` may instead be a
  :class:`~tgad_lite.data.microservices.ServiceWindows` (then its mask and labels are used).
- ``predict_risk(x, mask) -> [B, N]`` float64 in ``[0, 1]``: each service's risk of being in an
  incident at the window's LAST step, higher = riskier. These are scores for ranking and for a
  threshold chosen on validation data, not calibrated probabilities (see each model).
- ``name`` for tables.

Models:

- :class:`RobustZRisk`: max over metrics of ``|x - median| / (1.4826 MAD)`` at the last step,
  statistics per service and metric from the training windows, squashed to ``z / (z + z_half)``.
  Nothing learned beyond those statistics; labels are ignored.
- :class:`GradientBoostingRisk`: scikit-learn's ``HistGradientBoostingClassifier`` (handles NaN
  natively) on window summary statistics (:func:`window_features`), ONE model shared by all
  services (rows are (window, service) pairs), balanced class weights for the rare positives.
- :class:`IsolationForestRisk`: scikit-learn's ``IsolationForest`` on the same summaries,
  unsupervised (labels ignored); missing summaries are imputed with training medians while the
  observed-fraction features keep the missingness visible.
- :class:`RandomRisk`: seeded uniform scores, the floor.

The summaries and the GBM / isolation forest compare services with one model, so feed them
windows normalised per service (``time_split(..., normalise=True)`` does it with training-span
statistics): raw CPU % of one service and latency ms of another are not comparable units.
``x`` holds NaN where unobserved; ``mask`` (default: the finite entries of ``x``) says what was
observed and values outside it are never read. A service with nothing observed at the last step
gets risk 0 from the z-score rule ("no evidence"), and whatever its summaries say from the others.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from tgad_lite.anomaly.baselines import _check_int, _check_seed
from tgad_lite.data.microservices.windows import robust_center_scale

if TYPE_CHECKING:  # scikit-learn is imported where a model is fitted: importing the package stays fast
    from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

__all__ = [
    "WINDOW_STATISTICS",
    "GradientBoostingRisk",
    "IsolationForestRisk",
    "RandomRisk",
    "RobustZRisk",
    "ServiceRiskModel",
    "check_windows",
    "default_service_baselines",
    "observed_values",
    "window_feature_names",
    "window_features",
]

# Per metric, in this order (window_features' last axis is metric-major: metric 0's 8, then metric 1's ...).
WINDOW_STATISTICS: tuple[str, ...] = ("last", "mean", "std", "min", "max", "slope", "last_minus_mean", "observed")
_CHUNK_ELEMENTS = 4_000_000  # windows summarised per chunk: bounds the float64 temporaries (~32 MB each)


def _unpack(x: Any, mask: Any, labels: Any = None) -> tuple[Any, Any, Any]:
    """A ServiceWindows (or anything with .x/.mask/.labels) passed as ``x`` supplies all three."""
    if hasattr(x, "x") and hasattr(x, "mask"):
        if mask is not None:
            raise ValueError("pass either a ServiceWindows or arrays (x, mask, labels), not both")
        return x.x, x.mask, getattr(x, "labels", None) if labels is None else labels
    return x, mask, labels


def check_windows(x: Any, mask: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Shape and dtype checks of ``x [B, S, N, F]`` and ``mask [B, S, N, F]`` (bool, or None).

    Returns them as arrays WITHOUT converting values (strided window views stay views, so a
    thousand services never become one huge float64 copy); :func:`observed_values` converts a
    slice. ``mask=None`` means "observed where finite".
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"x must be numbers, got dtype {arr.dtype}")
    if arr.ndim != 4:
        raise ValueError(
            f"x must be windows [B, S, N, F] (windows, steps, services, metrics), got shape {arr.shape}; "
            "cut a [T, N, F] series with tgad_lite.data.microservices.make_windows"
        )
    if 0 in arr.shape:
        raise ValueError(f"x is empty (shape {arr.shape}); pass at least one window of >= 1 step, service and metric")
    if mask is None:
        return arr, None
    m = np.asarray(mask)
    if m.shape != arr.shape or m.dtype != np.bool_:
        raise ValueError(f"mask must be a bool array shaped like x {arr.shape}, got {m.dtype} {m.shape}")
    return arr, m


def observed_values(arr: np.ndarray, m: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``arr`` as float64 with NaN outside the mask, and the mask (computed when None).

    With a mask, ``arr`` must be finite wherever it says observed: a NaN there is a bug
    upstream, not a missing value, and is refused.
    """
    v = arr.astype(np.float64)
    if m is None:
        return v, np.isfinite(v)
    bad = m & ~np.isfinite(v)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"x is not finite at {where} (within the slice checked) where mask says observed "
            f"({int(bad.sum())} such entries); fix the data, or set mask False there"
        )
    return np.where(m, v, np.nan), m


def _check_labels(labels: Any, shape: tuple[int, int]) -> np.ndarray:
    if labels is None:
        raise ValueError("labels [B, N] are required to fit this model; pass the windows' labels")
    lab = np.asarray(labels)
    if lab.shape != shape:
        raise ValueError(f"labels must be [B, N] = {shape} like x, got {lab.shape}")
    if lab.dtype.kind not in "biuf" or not np.isin(lab, (0, 1)).all():
        raise ValueError("labels must be 0/1 (1 = the service is in an incident at the window's last step)")
    return lab.astype(np.int8)


def window_feature_names(metric_names: Any = None, num_metrics: int = 4) -> list[str]:
    """Names of :func:`window_features`' columns, ``"<metric>:<statistic>"`` metric-major."""
    metrics = [str(m) for m in metric_names] if metric_names is not None else [f"m{j}" for j in range(num_metrics)]
    return [f"{m}:{s}" for m in metrics for s in WINDOW_STATISTICS]


def _summaries(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """[b, S, N, F] (NaN outside m) -> [b, N, F, 8] summaries (see window_features)."""
    s = x.shape[1]
    cnt = m.sum(axis=1)  # [b, N, F]
    v = np.where(m, x, 0.0)
    t = np.arange(s, dtype=np.float64)[None, :, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = v.sum(axis=1) / cnt
        dev = np.where(m, x - mean[:, None], 0.0)
        std = np.sqrt((dev**2).sum(axis=1) / cnt)
        t_mean = (m * t).sum(axis=1) / cnt
        t_dev = np.where(m, t - t_mean[:, None], 0.0)
        # Least-squares slope per step over the observed steps; undefined (NaN) with < 2 of them.
        den = (t_dev**2).sum(axis=1)
        slope = np.where(den > 0, (t_dev * dev).sum(axis=1) / den, np.nan)
    lo = np.where(m, x, np.inf).min(axis=1)
    hi = np.where(m, x, -np.inf).max(axis=1)
    none = cnt == 0
    lo[none] = np.nan
    hi[none] = np.nan
    last = x[:, -1]  # NaN when unobserved at the last step
    return np.stack([last, mean, std, lo, hi, slope, last - mean, cnt / s], axis=-1)


def window_features(x: Any, mask: Any = None) -> np.ndarray:
    """Summary statistics of every service's window: ``[B, N, 8 F]`` float64.

    Per metric (in :data:`WINDOW_STATISTICS` order, metric-major; names from
    :func:`window_feature_names`): the value at the last step, the mean, standard deviation
    (population), minimum and maximum over the observed steps, the least-squares slope per step,
    last minus mean, and the observed fraction of the ``S`` steps. Statistics of a metric with
    no observed step (or the slope with fewer than two) are NaN; the observed fraction never is.
    Computed in chunks of windows, so a thousand services fit in memory. ``x`` may be a
    ``ServiceWindows``.
    """
    x, mask, _ = _unpack(x, mask)
    arr, m = check_windows(x, mask)
    b, s, n, f = arr.shape
    out = np.empty((b, n, f * len(WINDOW_STATISTICS)), dtype=np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // (s * n * f))
    for lo in range(0, b, chunk):
        part = slice(lo, lo + chunk)
        values, observed = observed_values(arr[part], None if m is None else m[part])
        out[part] = _summaries(values, observed).reshape(-1, n, out.shape[2])
    return out


class ServiceRiskModel(ABC):
    """What every per-service risk model implements (the baselines here; the temporal GAT wraps to it).

    - ``fit(x, mask=None, labels=None) -> self`` on training windows ``x [B, S, N, F]`` (or a
      ``ServiceWindows``), ``labels [B, N]``; refitting starts from scratch.
    - ``predict_risk(x, mask=None) -> [B, N]`` float64 in ``[0, 1]``, higher = riskier.
    - ``name``: a short label for tables.

    ``fit`` builds everything in locals and assigns the fitted state last, so a refused or failed
    fit leaves the model as it was (unfitted, or the previous fit), never half-fitted.
    """

    name: str = "service-risk"
    n_metrics_: int | None = None

    @abstractmethod
    def fit(self, x: Any, mask: Any = None, labels: Any = None) -> Self:
        """Learn from training windows; returns ``self``."""

    @abstractmethod
    def predict_risk(self, x: Any, mask: Any = None) -> np.ndarray:
        """Risk ``[B, N]`` in ``[0, 1]`` of every service at every window's last step."""

    def _inputs(self, x: Any, mask: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Checked ``(x, mask)`` (see :func:`check_windows`) of a fitted model's input."""
        if self.n_metrics_ is None:
            raise RuntimeError(f"{self.name} is not fitted; call fit(train windows) before predict_risk")
        x, mask, _ = _unpack(x, mask)
        arr, m = check_windows(x, mask)
        if arr.shape[3] != self.n_metrics_:
            raise ValueError(f"x has {arr.shape[3]} metrics but {self.name} was fitted on {self.n_metrics_}")
        return arr, m

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class RandomRisk(ServiceRiskModel):
    """Uniform random risk in ``[0, 1)`` that ignores the data: the floor (PR-AUC = positive rate).

    A pure function of ``(seed, B, N)``; ``fit`` only records the metric count.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = _check_seed(seed)
        self.name = "random"

    def fit(self, x: Any, mask: Any = None, labels: Any = None) -> Self:
        x, mask, _ = _unpack(x, mask, labels)
        self.n_metrics_ = int(check_windows(x, mask)[0].shape[3])  # values unread: random ignores them
        return self

    def predict_risk(self, x: Any, mask: Any = None) -> np.ndarray:
        b, _, n, _ = self._inputs(x, mask)[0].shape
        return np.random.default_rng([self.seed, b, n]).random((b, n))


class RobustZRisk(ServiceRiskModel):
    """The robust z-score rule: how far is each service's last step from its usual values?

    ``fit`` keeps, per service and metric, the median and ``1.4826 * MAD`` of the training
    windows' last steps (one value per window, so each step counts once at stride 1; incidents in
    training are outliers the median and MAD ignore). A scale that is 0 (a constant metric) or
    undefined is floored at ``1e-6 * max(1, |median|)``. ``predict_risk``:
    ``z = max over observed metrics |x_last - median| / scale``, ``risk = z / (z + z_half)``
    (0.5 at ``z_half`` robust sigmas); 0 for a service with no metric observed at the last step
    or none observed in training. Services are matched by position: predict on the same ``N``.
    """

    def __init__(self, z_half: float = 3.0) -> None:
        if isinstance(z_half, bool) or not isinstance(z_half, numbers.Real) or not z_half > 0:
            raise ValueError(f"z_half must be a number > 0 (the z-score where risk is 0.5), got {z_half!r}")
        self.z_half = float(z_half)
        self.name = "robust-z"
        self.center_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, x: Any, mask: Any = None, labels: Any = None) -> Self:
        x, mask, _ = _unpack(x, mask, labels)
        arr, m = check_windows(x, mask)
        last, _ = observed_values(arr[:, -1], None if m is None else m[:, -1])  # [B, N, F]
        center, scale = robust_center_scale(last, axis=0, method="mad")  # [N, F]
        scale = np.maximum(np.nan_to_num(scale, nan=0.0), 1e-6 * np.maximum(1.0, np.abs(np.nan_to_num(center))))
        self.center_, self.scale_ = center, scale
        self.n_metrics_ = int(arr.shape[3])
        return self

    def z_scores(self, x: Any, mask: Any = None) -> np.ndarray:
        """``[B, N]`` max robust z over observed metrics at the last step (NaN: nothing to judge)."""
        arr, m = self._inputs(x, mask)
        if arr.shape[2] != self.center_.shape[0]:
            raise ValueError(
                f"x has {arr.shape[2]} services but {self.name} was fitted on {self.center_.shape[0]}: its statistics "
                "are per service; predict on the same services or refit"
            )
        last, _ = observed_values(arr[:, -1], None if m is None else m[:, -1])
        z = np.abs(last - self.center_) / self.scale_  # NaN where unobserved now or never in training
        seen = np.isfinite(z).any(axis=2)
        return np.where(seen, np.where(np.isfinite(z), z, -np.inf).max(axis=2), np.nan)

    def predict_risk(self, x: Any, mask: Any = None) -> np.ndarray:
        z = np.nan_to_num(self.z_scores(x, mask), nan=0.0)
        return z / (z + self.z_half)


class GradientBoostingRisk(ServiceRiskModel):
    """Gradient boosting on window summaries, one model for all services (rows = (window, service)).

    scikit-learn's ``HistGradientBoostingClassifier`` on :func:`window_features` (NaN handled
    natively: a missing value is routed down whichever side of a split helps), with
    ``class_weight="balanced"`` so the rare positive (window, service) pairs weigh as much in
    total as the negatives. Because of that weighting, ``predict_proba`` over-states the
    positive rate: treat the risk as a score and pick its threshold on validation windows.
    Sharing one model across services means it learns what an incident *looks like* in the
    summaries, not which service usually fails, and it applies to services (and graphs) not seen
    in training.

    ``n_threads`` caps scikit-learn's OpenMP threads while fitting and predicting (``None``: its
    default, every core). On a machine whose cores are busy with other work, 1 can be many times
    faster than all (measured here: a 4k-row fit took 30 s with all threads of a loaded
    2-core machine, 3.7 s with one).
    """

    def __init__(
        self,
        max_iter: int = 200,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        class_weight: str | None = "balanced",
        seed: int = 0,
        n_threads: int | None = None,
    ) -> None:
        self.max_iter = _check_int("max_iter", max_iter, 1)
        self.n_threads = None if n_threads is None else _check_int("n_threads", n_threads, 1)
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real) or not learning_rate > 0:
            raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.max_leaf_nodes = _check_int("max_leaf_nodes", max_leaf_nodes, 2)
        if class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {class_weight!r}")
        self.class_weight = class_weight
        self.seed = _check_seed(seed)
        self.name = "gbm"
        self.model_: HistGradientBoostingClassifier | None = None

    def fit(self, x: Any, mask: Any = None, labels: Any = None) -> Self:
        x, mask, labels = _unpack(x, mask, labels)
        feats = window_features(x, mask)
        lab = _check_labels(labels, feats.shape[:2]).reshape(-1)
        positives = int(lab.sum())
        if positives in (0, lab.size):
            raise ValueError(
                f"the training labels hold {'no' if positives == 0 else 'only'} positive (window, service) pairs; "
                "a classifier needs both classes: train on a span with incidents (more steps or num_incidents)"
            )
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        # early_stopping=False: the same data gives the same trees, without a hidden random split.
        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            class_weight=self.class_weight,
            early_stopping=False,
            random_state=self.seed,
        )
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            model.fit(feats.reshape(-1, feats.shape[2]), lab)
        self.model_ = model
        self.n_metrics_ = int(np.shape(x)[3])
        return self

    def predict_risk(self, x: Any, mask: Any = None) -> np.ndarray:
        arr, m = self._inputs(x, mask)
        feats = window_features(arr, m)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            proba = self.model_.predict_proba(feats.reshape(-1, feats.shape[2]))[:, 1]
        return proba.reshape(feats.shape[:2])


class IsolationForestRisk(ServiceRiskModel):
    """Isolation forest (Liu et al., 2008) on window summaries, unsupervised: labels are ignored.

    Fitted on the :func:`window_features` rows of all (window, service) pairs of the training
    windows, incidents included (an unsupervised detector does not know where they are).
    ``IsolationForest`` refuses NaN, so a missing summary is replaced by that feature's training
    median (0 if never observed); the observed-fraction features still say it was missing.
    Risk is the paper's anomaly score ``s = -score_samples`` in ``(0, 1]`` (about 0.5 and below for
    ordinary points, towards 1 for points isolated quickly).
    """

    def __init__(self, n_estimators: int = 100, max_samples: int | str = "auto", seed: int = 0) -> None:
        self.n_estimators = _check_int("n_estimators", n_estimators, 1)
        if max_samples != "auto":
            max_samples = _check_int("max_samples", max_samples, 1)
        self.max_samples = max_samples
        self.seed = _check_seed(seed)
        self.name = "iforest"
        self.forest_: IsolationForest | None = None
        self.fill_: np.ndarray | None = None

    def fit(self, x: Any, mask: Any = None, labels: Any = None) -> Self:
        x, mask, _ = _unpack(x, mask, labels)
        feats = window_features(x, mask)
        rows = feats.reshape(-1, feats.shape[2])
        fill = np.nan_to_num(robust_center_scale(rows, axis=0)[0], nan=0.0)
        rows = np.where(np.isnan(rows), fill, rows)
        max_samples = self.max_samples if self.max_samples == "auto" else min(self.max_samples, rows.shape[0])
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(
            n_estimators=self.n_estimators, max_samples=max_samples, random_state=self.seed, n_jobs=1
        ).fit(rows)
        self.forest_, self.fill_ = forest, fill
        self.n_metrics_ = int(np.shape(x)[3])
        return self

    def predict_risk(self, x: Any, mask: Any = None) -> np.ndarray:
        arr, m = self._inputs(x, mask)
        feats = window_features(arr, m)
        rows = feats.reshape(-1, feats.shape[2])
        rows = np.where(np.isnan(rows), self.fill_, rows)
        return -self.forest_.score_samples(rows).reshape(feats.shape[:2])


def default_service_baselines(seed: int = 0) -> list[ServiceRiskModel]:
    """One unfitted instance of every baseline with default settings, in table order."""
    return [RandomRisk(seed=seed), RobustZRisk(), IsolationForestRisk(seed=seed), GradientBoostingRisk(seed=seed)]
