"""The compiled forest against quantile-forest and scikit-learn (property tests)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quantile_forest import RandomForestQuantileRegressor
from sklearn.ensemble import RandomForestRegressor

from cup4soil.models import forest as _forest


def _data(seed: int, n: int, f: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    # ties and a coarse target exercise equal leaf values and equal thresholds
    x[:, 0] = np.round(x[:, 0], 1)
    y = np.round(x[:, 0] * 3 + rng.normal(scale=0.5, size=n), 1)
    return x, y, rng


# fitting forests is the expensive part: fewer examples than the profile's
@settings(max_examples=min(15, settings().max_examples),
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(5, 300), f=st.integers(1, 8),
       trees=st.integers(1, 40), leaf=st.integers(1, 6),
       q=st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_quantiles_equal_quantile_forest(seed, n, f, trees, leaf, q):
    x, y, rng = _data(seed, n, f)
    qrf = RandomForestQuantileRegressor(n_estimators=trees, min_samples_leaf=leaf,
                                        random_state=seed).fit(x, y)
    xp = rng.normal(size=(97, f)).astype(np.float32)  # not a multiple of the 16 lanes
    xp[:5] = x[:5]  # exactly on training values (and so next to thresholds)
    forest = _forest.compile_forest(qrf)
    mine = _forest.predict_quantiles(forest, xp, q)
    ref = np.asarray(qrf.predict(xp, quantiles=q)).reshape(len(xp), len(q))
    np.testing.assert_array_equal(mine, ref)


@settings(max_examples=min(10, settings().max_examples))
@given(seed=st.integers(0, 10_000), n=st.integers(5, 200), f=st.integers(1, 6))
def test_mean_equals_random_forest(seed, n, f):
    x, y, rng = _data(seed, n, f)
    rf = RandomForestRegressor(n_estimators=7, random_state=seed).fit(x, y)
    xp = rng.normal(size=(50, f)) * 2  # float64 input is cast to float32, as sklearn does
    np.testing.assert_allclose(_forest.predict_mean(_forest.compile_forest(rf), xp),
                               rf.predict(xp), rtol=1e-12)


@settings(max_examples=min(10, settings().max_examples),
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(5, 200), f=st.integers(1, 6),
       trees=st.integers(1, 30), q=st.lists(st.floats(0, 1), min_size=1, max_size=4))
def test_quantiles_and_mean_in_one_walk(seed, n, f, trees, q):
    x, y, rng = _data(seed, n, f)
    qrf = RandomForestQuantileRegressor(n_estimators=trees, random_state=seed).fit(x, y)
    forest = _forest.compile_forest(qrf)
    xp = rng.normal(size=(70, f))
    xp[3, 0] = np.nan  # a missing feature: NaN in both
    both_q, both_mean = _forest.predict_quantiles_and_mean(forest, xp, q)
    np.testing.assert_array_equal(both_q, _forest.predict_quantiles(forest, xp, q))
    np.testing.assert_array_equal(both_mean, _forest.predict_mean(forest, xp))
    assert np.isnan(both_q[3]).all() and np.isnan(both_mean[3])


def test_blocks_walked_in_place_equal_copied_rows():
    """A float32 C-ordered block without NaN is walked in place (views of its rows, over
    several kernel batches, the last one padded); any other input is copied. Same results,
    and both equal quantile-forest's."""
    x, y, rng = _data(5, 300, 6)
    qrf = RandomForestQuantileRegressor(n_estimators=20, random_state=5).fit(x, y)
    forest = _forest.compile_forest(qrf)
    n = 2 * _forest._BATCH + 37  # three batches; the last not a multiple of 16 lanes
    xp = rng.normal(size=(n, 6)).astype(np.float32)
    q = [0.05, 0.5, 0.95]
    in_place = _forest.predict_quantiles_and_mean(forest, xp, q)
    copied = _forest.predict_quantiles_and_mean(forest, np.asfortranarray(xp), q)
    for a, b in zip(in_place, copied, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(in_place[0], np.asarray(qrf.predict(xp, quantiles=q)))
    np.testing.assert_array_equal(_forest.predict_mean(forest, xp), in_place[1])
    np.testing.assert_allclose(in_place[1], qrf.predict(xp, quantiles="mean"), rtol=1e-12)


@given(seed=st.integers(0, 10_000), n_train=st.integers(1, 3000), trees=st.integers(1, 130),
       q=st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_rank_histogram_quantiles_equal_numpy(seed, n_train, trees, q):
    rng = np.random.default_rng(seed)
    y_sorted = np.sort(np.round(rng.normal(size=n_train), 2))
    ranks = rng.integers(0, n_train, size=(40, trees)).astype(np.uint32)
    qs = np.sort(np.asarray(q))
    pos = qs * (trees - 1)
    lows = np.floor(pos).astype(np.int64)
    out = np.empty((40, qs.size))
    _forest._rank_quantiles(ranks, y_sorted, lows, pos - lows,
                            max(0, n_train.bit_length() // 2), out)
    np.testing.assert_array_equal(out, np.quantile(y_sorted[ranks], qs, axis=1).T)


def test_nan_rows_and_threshold_rounding():
    x, y, _ = _data(1, 200, 3)
    qrf = RandomForestQuantileRegressor(n_estimators=10, random_state=0).fit(x, y)
    forest = _forest.compile_forest(qrf)
    xp = np.array([[np.nan, 0, 0], [0.1, 0.2, 0.3], [np.inf, 1, 1]])
    out = _forest.predict_quantiles(forest, xp, [0.5])
    assert np.isnan(out[[0, 2]]).all() and np.isfinite(out[1]).all()
    # every split threshold is the largest float32 <= scikit-learn's float64 threshold, so
    # float32 inputs go the same way; leaves compare with +inf
    thr = forest.nodes.reshape(-1, 4)[:, 1].view(np.float32)
    rounded = 0
    for k, est in enumerate(qrf.estimators_):
        t = est.tree_
        o = int(forest.roots[k]) // 4
        mine = thr[o:o + t.node_count]
        split = t.children_left >= 0
        t64, t32 = t.threshold[split], mine[split]
        assert (t32.astype(np.float64) <= t64).all()
        assert (t64 < np.nextafter(t32, np.float32(np.inf)).astype(np.float64)).all()
        assert np.isposinf(mine[~split]).all()
        rounded += int((t32.astype(np.float64) < t64).sum())
    assert rounded > 0  # midpoints between float32 values: most are not float32 themselves


def test_round_trip_and_refusals():
    x, y, _ = _data(2, 100, 2)
    qrf = RandomForestQuantileRegressor(n_estimators=5, random_state=0).fit(x, y)
    forest = _forest.compile_forest(qrf)
    again = _forest.CompiledForest.from_arrays(forest.to_arrays())
    xp = np.random.default_rng(0).normal(size=(33, 2))
    np.testing.assert_array_equal(_forest.predict_quantiles(again, xp, [0.1, 0.9]),
                                  _forest.predict_quantiles(forest, xp, [0.1, 0.9]))
    with pytest.raises(ValueError, match="expected an"):
        _forest.predict_quantiles(forest, xp[:, :1], [0.5])
    big_leaf = RandomForestQuantileRegressor(n_estimators=3, max_samples_leaf=None).fit(x, y)
    with pytest.raises(ValueError, match="max_samples_leaf=1"):
        _forest.compile_forest(big_leaf)
