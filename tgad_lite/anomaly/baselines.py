"""Baseline anomaly detectors for multivariate time series, behind one small interface.

A deep detector's number means little until it is shown beside detectors that learn almost
nothing, on the same data and with the same threshold rule. Every detector here is a
:class:`Detector`: ``fit(train [T, F]) -> self``, ``score(x [T, F]) -> [T]`` (higher = more
anomalous), ``score_features(x) -> [T, F]`` where the method has per-feature scores (for
attribution metrics such as HitRate), and a ``name`` for tables.

- :class:`RandomDetector`: uniform random scores that ignore the data, the honest floor (under
  point-adjusted F1 it already scores about 0.9 on MSL).
- :class:`MagnitudeDetector`: ``|z|`` of the raw signal standardised with training statistics,
  reduced over features by max or L2.
- :class:`PCADetector`: squared reconstruction error of a PCA fitted on training data.
- :class:`KNNDetector`: distance of each sliding window to its nearest training windows, with a
  bounded, seeded subsample of training windows as the index.
- :class:`IsolationForestDetector`: scikit-learn's isolation forest, seeded.

Inputs are numpy arrays (or anything :func:`numpy.asarray` takes, torch tensors included) and
are checked by :func:`tgad_lite.anomaly.protocol.check_series` (2-D, real, finite, the training
feature count); outputs are new float64 arrays. Standardisation always uses training statistics
only (:func:`tgad_lite.anomaly.protocol.fit_normaliser`), and a feature constant in training is
centred but not scaled, so it gives finite scores (see :class:`~tgad_lite.anomaly.protocol.Normaliser`).
"""

from __future__ import annotations

import numbers
import warnings
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np

from tgad_lite.anomaly.protocol import Normaliser, check_series, fit_normaliser

if TYPE_CHECKING:  # scikit-learn is imported where a detector is fitted: importing the package stays fast
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import NearestNeighbors

__all__ = [
    "Detector",
    "IsolationForestDetector",
    "KNNDetector",
    "MagnitudeDetector",
    "PCADetector",
    "RandomDetector",
    "default_baselines",
]


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    return int(seed)


class Detector(ABC):
    """What every anomaly detector in tgad-lite implements (baselines here, MTAD-GAT later).

    - ``fit(train [T, F]) -> self`` learns from (assumed normal) training data only; calling it
      again refits from scratch.
    - ``score(x [T, F]) -> [T]`` float64, higher = more anomalous, one score per time step.
    - ``score_features(x [T, F]) -> [T, F]`` float64 per-feature scores, for detectors that have
      them; the default raises ``NotImplementedError``.
    - ``name``: a short label for tables and plots.

    Subclasses call :meth:`_check_train` in ``fit`` and :meth:`_check_input` in ``score`` so every
    detector refuses the same bad input with the same messages (not 2-D, not finite, another
    feature count than in training, scoring before fitting). ``fit`` builds everything in local
    variables and sets ``n_features_`` last, so a refused or failed fit leaves the detector as it
    was (unfitted, or still the previous fit), never half-fitted.
    """

    name: str = "detector"
    n_features_: int | None = None

    @abstractmethod
    def fit(self, train: Any) -> Self:
        """Learn from ``train [T, F]``; returns ``self``."""

    @abstractmethod
    def score(self, x: Any) -> np.ndarray:
        """Anomaly score ``[T]`` of every time step of ``x [T, F]``."""

    def score_features(self, x: Any) -> np.ndarray:
        """Per-feature anomaly scores ``[T, F]``; not every method has them."""
        raise NotImplementedError(
            f"{self.name} gives one score per time step only, no per-feature scores; use score(x) -> [T], "
            "or a detector with per-feature scores (magnitude, pca, random) for attribution"
        )

    def _check_train(self, train: Any, min_length: int = 1) -> np.ndarray:
        return check_series(train, "train", min_length=min_length)

    def _check_input(self, x: Any, min_length: int = 1) -> np.ndarray:
        if self.n_features_ is None:
            raise RuntimeError(f"{self.name} is not fitted; call fit(train) before scoring")
        return check_series(x, "x", n_features=self.n_features_, min_length=min_length)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class RandomDetector(Detector):
    """Uniform random scores in ``[0, 1)`` that ignore the data: the floor any method must beat.

    Scores are a pure function of ``(seed, T)`` (and ``F`` for :meth:`score_features`): the same
    seed and length give the same scores whatever the values of ``x``, so a run is reproducible
    and the detector provably learns nothing. Two series of equal length get the same draws, so
    for a threshold calibrated on "training scores" independent of the test scores use another
    seed for the calibration draw. ``fit`` only records the feature count.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = _check_seed(seed)
        self.name = "random"

    def fit(self, train: Any) -> Self:
        self.n_features_ = int(self._check_train(train).shape[1])
        return self

    def score(self, x: Any) -> np.ndarray:
        t = self._check_input(x).shape[0]
        return np.random.default_rng([self.seed, t]).random(t)

    def score_features(self, x: Any) -> np.ndarray:
        t, f = self._check_input(x).shape
        return np.random.default_rng([self.seed, t, f]).random((t, f))


class MagnitudeDetector(Detector):
    """How far the raw signal is from its training mean: ``|z|`` per feature, max or L2 over features.

    ``z = (x - mean_train) / std_train`` (a feature constant in training has ``std = 1``, so its
    test changes count in raw units). ``score_features(x) -> |z| [T, F]``; ``score(x) -> [T]`` is
    ``max_f |z|`` (``reduce="max"``, name ``magnitude-max``) or ``sqrt(sum_f z^2)``
    (``reduce="l2"``, name ``magnitude-l2``). No temporal context at all: it flags values that
    are extreme, not values that are unusual for their moment.
    """

    def __init__(self, reduce: Literal["max", "l2"] = "max") -> None:
        if reduce not in ("max", "l2"):
            raise ValueError(f"reduce must be 'max' or 'l2' (how |z| is combined over features), got {reduce!r}")
        self.reduce = reduce
        self.name = f"magnitude-{reduce}"
        self.normaliser_: Normaliser | None = None

    def fit(self, train: Any) -> Self:
        x = self._check_train(train)
        self.normaliser_ = fit_normaliser(x, "zscore")
        self.n_features_ = int(x.shape[1])
        return self

    def score_features(self, x: Any) -> np.ndarray:
        x = self._check_input(x)
        return np.abs(self.normaliser_.transform(x))

    def score(self, x: Any) -> np.ndarray:
        z = self.score_features(x)
        return z.max(axis=1) if self.reduce == "max" else np.sqrt((z * z).sum(axis=1))


class PCADetector(Detector):
    """Squared error of reconstructing each time step from a PCA fitted on training data.

    ``n_components``: a float in ``(0, 1)`` keeps the fewest components explaining that fraction
    of training variance; an int keeps that many (at most the training feature count). With
    ``standardise=True`` (default) features are z-scored with training statistics first, so a
    feature's units do not decide its weight. ``score_features(x) -> [T, F]`` is the per-feature
    squared residual, ``score(x) -> [T]`` its sum over features. If every training feature is
    constant there is no direction to learn: the reconstruction is the training mean. If the
    kept components span every feature, all errors are 0 and a ``UserWarning`` says so.

    Per-feature scores are rounded: below ``resolution_`` (``1e-9`` of the training data's mean
    variance per non-constant feature after standardising: ``1e-9`` with the default) to 0, above it
    to float32's 24 significant bits (returned as float64). Why: when the
    training data has fewer independent directions than features (a command column that never
    changes in training, two columns that move together), steps whose residuals are EQUAL in exact
    arithmetic get scores that differ by floating-point noise (about ``1e-16`` of their size), and
    any threshold, an oracle's above all, then ranks steps by that noise. On MSL channel F-5 the
    3922 test scores take 3684 distinct values, 2 after rounding; the oracle best F1 there is 0.48
    unrounded and 0.07 rounded, and the unrounded value moves between 0.29 and 0.54 when the
    columns are merely reordered, and from one machine to another (0.359 against 0.373 averaged over
    MSL's channels). Rounded, the scores do not depend on column order.
    """

    def __init__(self, n_components: float | int = 0.95, standardise: bool = True) -> None:
        if isinstance(n_components, bool) or not isinstance(n_components, numbers.Real):
            raise ValueError(f"n_components must be a float in (0, 1) or an int >= 1, got {n_components!r}")
        if isinstance(n_components, numbers.Integral):
            n_components = _check_int("n_components", n_components, 1)
        elif not 0.0 < n_components < 1.0:
            raise ValueError(
                f"n_components as a float is the fraction of training variance to keep and must be in (0, 1), "
                f"got {n_components!r}; pass an int for a number of components"
            )
        self.n_components = n_components
        self.standardise = bool(standardise)
        self.name = "pca"
        self.normaliser_: Normaliser | None = None
        self.pca_: PCA | None = None

    def fit(self, train: Any) -> Self:
        x = self._check_train(train)
        t, f = x.shape
        if isinstance(self.n_components, int) and self.n_components > min(t, f):
            raise ValueError(
                f"n_components={self.n_components} but train has {t} steps and {f} features, so at most "
                f"{min(t, f)} components exist; pass a smaller int or a variance fraction such as 0.95"
            )
        normaliser = fit_normaliser(x, "zscore") if self.standardise else None
        z = normaliser.transform(x) if normaliser is not None else x
        pca = None
        if np.ptp(z, axis=0).max() > 0:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=self.n_components, svd_solver="full").fit(z)
            if pca.n_components_ >= f:
                warnings.warn(
                    f"PCA keeps {pca.n_components_} of {f} components, so it reconstructs every step "
                    "exactly and all scores are 0; lower n_components",
                    UserWarning,
                    stacklevel=2,
                )
        self.normaliser_, self.pca_, self.mean_ = normaliser, pca, z.mean(axis=0)
        self.n_features_ = f
        variance = z.var(axis=0)
        varying = variance > 0
        self.resolution_ = 1e-9 * (float(variance[varying].mean()) if varying.any() else 1.0)
        return self

    def score_features(self, x: Any) -> np.ndarray:
        z = self._check_input(x)
        if self.normaliser_ is not None:
            z = self.normaliser_.transform(z)
        recon = self.mean_ if self.pca_ is None else self.pca_.inverse_transform(self.pca_.transform(z))
        # Floating-point noise out (class docstring): below resolution_ is 0, above it a value keeps
        # float32's 24 significant bits (relative steps of 6e-8; the noise is about 1e-16 of the value).
        squared = (z - recon) ** 2
        squared[squared < self.resolution_] = 0.0
        return squared.astype(np.float32).astype(np.float64)

    def score(self, x: Any) -> np.ndarray:
        return self.score_features(x).sum(axis=1)


class KNNDetector(Detector):
    """Distance from each sliding window to its ``k``-th nearest training window.

    Windows are ``window`` consecutive steps of the z-scored series (training statistics),
    flattened to ``window * F`` numbers; distances are Euclidean (scikit-learn
    ``NearestNeighbors``). The index is **bounded**: at most ``max_train_windows`` training
    windows, drawn without replacement with ``seed`` (all of them when there are fewer), so fit
    and score stay fast on long series such as MSL's 58k training steps. ``index_size_`` is the
    number kept.

    Window ``[t - window + 1, t]`` gives its score to its **last** step ``t``, so a score uses no
    future values; the first ``window - 1`` steps, which end no full window, get the first
    window's score. Scoring the training data itself is optimistic: a training window in the
    index is its own nearest neighbour (distance 0), so calibrate a threshold on held-out data
    or use ``k >= 2``. ``score_features`` is not available.
    """

    def __init__(self, window: int = 10, k: int = 1, max_train_windows: int = 5000, seed: int = 0) -> None:
        self.window = _check_int("window", window, 1)
        self.k = _check_int("k", k, 1)
        self.max_train_windows = _check_int("max_train_windows", max_train_windows, 1)
        self.seed = _check_seed(seed)
        self.name = "knn"
        self.normaliser_: Normaliser | None = None
        self.index_: NearestNeighbors | None = None
        self.index_size_ = 0

    def _windows(self, z: np.ndarray) -> np.ndarray:
        # A read-only view [T - window + 1, F, window]; rows are copied only when they are used.
        return np.lib.stride_tricks.sliding_window_view(z, self.window, axis=0)

    def fit(self, train: Any) -> Self:
        x = self._check_train(train, min_length=self.window)
        n_windows = x.shape[0] - self.window + 1
        if n_windows < self.k:
            raise ValueError(
                f"train gives {n_windows} windows of {self.window} steps, fewer than k={self.k}; "
                "pass a longer training series, a shorter window or a smaller k"
            )
        normaliser = fit_normaliser(x, "zscore")
        windows = self._windows(normaliser.transform(x))
        keep = np.arange(n_windows)
        if n_windows > self.max_train_windows:
            rng = np.random.default_rng(self.seed)
            keep = np.sort(rng.choice(n_windows, size=self.max_train_windows, replace=False))
        flat = windows[keep].reshape(len(keep), -1)
        from sklearn.neighbors import NearestNeighbors

        self.index_ = NearestNeighbors(n_neighbors=self.k).fit(flat)
        self.normaliser_, self.index_size_ = normaliser, len(keep)
        self.n_features_ = int(x.shape[1])
        return self

    def score(self, x: Any, batch_size: int = 4096) -> np.ndarray:
        """``[T]`` distances; windows are queried ``batch_size`` at a time to bound memory."""
        batch_size = _check_int("batch_size", batch_size, 1)
        x = self._check_input(x, min_length=self.window)
        z = self.normaliser_.transform(x)
        windows = self._windows(z)
        dist = np.empty(windows.shape[0])
        for start in range(0, windows.shape[0], batch_size):
            chunk = windows[start : start + batch_size].reshape(-1, windows.shape[1] * self.window)
            dist[start : start + len(chunk)] = self.index_.kneighbors(chunk)[0][:, -1]
        return np.concatenate([np.full(self.window - 1, dist[0]), dist])


class IsolationForestDetector(Detector):
    """Isolation forest (Liu et al., 2008; scikit-learn's ``IsolationForest``) on single time steps.

    ``score(x) -> [T]`` is minus scikit-learn's ``score_samples`` (higher = easier to isolate =
    more anomalous). Trees split on raw values, so no standardisation is needed; ``seed`` fixes
    the trees. ``max_samples`` is the subsample per tree (``"auto"``: min(256, T)), which keeps
    it fast on long series.
    """

    def __init__(self, n_estimators: int = 100, max_samples: int | str = "auto", seed: int = 0) -> None:
        self.n_estimators = _check_int("n_estimators", n_estimators, 1)
        if max_samples != "auto":
            max_samples = _check_int("max_samples", max_samples, 1)
        self.max_samples = max_samples
        self.seed = _check_seed(seed)
        self.name = "iforest"
        self.forest_: IsolationForest | None = None

    def fit(self, train: Any) -> Self:
        x = self._check_train(train)
        max_samples = self.max_samples if self.max_samples == "auto" else min(self.max_samples, x.shape[0])
        from sklearn.ensemble import IsolationForest

        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators, max_samples=max_samples, random_state=self.seed, n_jobs=1
        ).fit(x)
        self.n_features_ = int(x.shape[1])
        return self

    def score(self, x: Any) -> np.ndarray:
        x = self._check_input(x)
        return -self.forest_.score_samples(x)


def default_baselines(seed: int = 0) -> list[Detector]:
    """One unfitted instance of every baseline with default settings, in table order."""
    return [
        RandomDetector(seed=seed),
        MagnitudeDetector("max"),
        MagnitudeDetector("l2"),
        PCADetector(),
        KNNDetector(seed=seed),
        IsolationForestDetector(seed=seed),
    ]
