"""Named generator presets: ``regime="easy"`` (the original generator) and ``regime="hard"``.

In the easy regime simple rules find the root cause: with ``hop_delay=1`` the service whose
symptoms start first is the root, the root's symptoms are the strongest (they decay by
``hop_decay`` per hop), only the root shows CPU and memory effects, every service is measured
with the same noise, and nothing but incidents moves the metrics. Public root-cause benchmarks
(RCAEval, 2025) find such rules strong on real metric data too, so a graph model has to be
judged where they fail. The hard regime turns on every option at a realistic setting; the
package docstring ("Regime options") says what each does and why it happens in real systems.

===========================  ==========  ==========  ============================================
option                       easy        hard        the hard setting
===========================  ==========  ==========  ============================================
``hop_delay``                1           0           symptoms of all hit services start together
``amplification``            (1, 1)      (1, 2)      each caller retries / fans out up to 2x,
                                                     compounding up the chain
``noise_spread``             0           0.7         per-service noise from 0.5x to 2x ``noise``
``unobserved_services``      0           0.1         a tenth of the services report nothing
``missing_metric_fraction``  0           0.1         a tenth of the other (service, metric)
                                                     pairs are never reported
``uninstrumented_roots``     0           0.25        a quarter of the root services report nothing
``load_surges``              0           4           four traffic bursts that are not incidents
``surge_duration``           (6, 24)     (6, 24)     30 minutes to 2 hours at 5-minute steps
``surge_height``             (1.5, 2.5)  (1.5, 2.5)  peak traffic 1.5x to 2.5x
===========================  ==========  ==========  ============================================

Missing values are missing, not zero: ``Telemetry.x`` holds NaN there and ``Telemetry.mask``
is False. ``simulate(..., regime="hard", hop_delay=1)`` takes the hard preset and overrides one
setting: an argument given explicitly always wins over the preset.
"""

from __future__ import annotations

from typing import Any

REGIMES: dict[str, dict[str, Any]] = {
    "easy": {
        "hop_delay": 1,
        "amplification": (1.0, 1.0),
        "noise_spread": 0.0,
        "unobserved_services": 0,
        "missing_metric_fraction": 0.0,
        "uninstrumented_roots": 0.0,
        "load_surges": 0,
        "surge_duration": (6, 24),
        "surge_height": (1.5, 2.5),
    },
    "hard": {
        "hop_delay": 0,
        "amplification": (1.0, 2.0),
        "noise_spread": 0.7,
        "unobserved_services": 0.1,
        "missing_metric_fraction": 0.1,
        "uninstrumented_roots": 0.25,
        "load_surges": 4,
        "surge_duration": (6, 24),
        "surge_height": (1.5, 2.5),
    },
}
REGIME_NAMES: tuple[str, ...] = tuple(REGIMES)


def regime_config(name: str) -> dict[str, Any]:
    """The settings of the preset ``name`` (``"easy"`` or ``"hard"``) as a fresh dict.

    ``simulate(regime=name)`` applies them to every argument left at ``None``.
    """
    if name not in REGIMES:
        raise ValueError(f"regime must be one of {'|'.join(REGIME_NAMES)}, got {name!r}")
    return dict(REGIMES[name])
