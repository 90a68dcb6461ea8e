"""Downsampling for drawing keeps every series' extremes and drops what cannot be drawn."""

from __future__ import annotations

import numpy as np
import pytest

from jupyter_ext.downsample import ema, minmax, minmax_indices


@pytest.mark.parametrize("n", [5, 1999, 2000, 2001, 10_007, 200_000])
@pytest.mark.parametrize("shape", ["walk", "spikes", "flat"])
def test_keeps_global_min_max_first_last_and_order(n, shape):
    rng = np.random.default_rng(n)
    if shape == "walk":
        y = np.cumsum(rng.normal(size=n))
    elif shape == "spikes":
        y = rng.normal(size=n)
        y[rng.integers(0, n, 3)] = [50.0, -50.0, 49.0][: min(3, n)]
    else:
        y = np.full(n, 3.0)
    x = np.arange(n) * 2
    idx = minmax_indices(x, y, max_points=500)
    assert len(idx) <= max(n, 502)
    assert np.all(np.diff(idx) > 0), "points must stay in their original order"
    assert idx[0] == 0 and idx[-1] == n - 1
    assert y[idx].max() == y.max() and y[idx].min() == y.min()
    if n <= 500:
        assert len(idx) == n


def test_extremes_of_every_bucket_survive_so_a_spike_is_visible():
    y = np.zeros(1_000_000)
    y[123_457] = 9.0  # one spike in a million: drawn, not averaged away
    xs, ys = minmax(np.arange(len(y)), y, max_points=1000)
    assert 9.0 in ys and xs[ys == 9.0][0] == 123_457
    assert len(xs) <= 1002


def test_non_finite_values_are_skipped_not_kept():
    y = np.array([1.0, np.nan, 5.0, np.inf, -np.inf, 2.0])
    x = np.array([0.0, 1.0, 2.0, 3.0, np.nan, 5.0])
    xs, ys = minmax(x, y)
    assert xs.tolist() == [0.0, 2.0, 5.0] and ys.tolist() == [1.0, 5.0, 2.0]
    big = np.where(np.arange(10_000) % 7 == 0, np.nan, np.arange(10_000.0))
    keep = minmax_indices(np.arange(10_000), big, 100)
    assert np.isfinite(big[keep]).all()
    assert big[keep].max() == np.nanmax(big) and big[keep].min() == np.nanmin(big)


def test_all_nan_series_gives_nothing_to_draw():
    assert len(minmax_indices(np.arange(3), np.full(3, np.nan))) == 0


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="equal length"):
        minmax_indices(np.arange(3), np.arange(4.0))
    with pytest.raises(ValueError, match="at least 4"):
        minmax_indices(np.arange(3), np.arange(3.0), max_points=2)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ema(np.arange(3.0), 1.0)


def test_ema_is_debiased_and_steps_over_non_finite_values():
    y = np.array([1.0, 1.0, 4.0, np.nan, 4.0])
    s = ema(y, 0.5)
    assert s[0] == 1.0  # debiased: the first value is not pulled towards zero
    assert s[2] == pytest.approx((0.25 * 1 + 0.5 * 1 + 4) / 1.75)
    assert np.isnan(s[3])
    assert s[4] == pytest.approx((0.125 * 1 + 0.25 * 1 + 0.5 * 4 + 4) / 1.875)
    assert ema(y, 0.0)[2] == 4.0
