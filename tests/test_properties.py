"""Property-based tests of the public surface: random frames, panels, 3-D arrays, CSV files and job parts.

Every generated input either imputes with the invariants (observed cells bit for bit, no gap left in columns that
had observations at fit, finite values of the column's own scale, input untouched, same index, columns and shape)
or raises a ``ValueError``/``TypeError`` whose message names the culprit (column, argument, shape or file). The
generator knows which inputs are malformed and which message they must get, so a refusal of a good input, an
acceptance of a bad one and a vague message all fail.

The example budget is fixed (hypothesis profile ``tsimpute-ci``: derandomized, no deadline); the same strategies
run with a large budget in ``benchmarks/fuzz_public_api.py``.
"""

from __future__ import annotations

import copy
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsimpute import Imputer
from tsimpute.threads import torch_threads

FAST = dict(window="auto", channels=8, n_layers=1, n_heads=2, n_samples=2, n_steps=5, max_steps=3, batch_size=8,
            validation_fraction=0, verbose=False, random_state=0, device="cpu", precision="fp32")

settings.register_profile("tsimpute-ci", deadline=None, derandomize=True, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile("tsimpute-ci")

#: examples per property in CI (about 2 minutes for the whole file on 2 shared CPU cores)
CI_EXAMPLES = {"frames": 100, "panels": 60, "arrays": 60, "shapes": 40, "cli": 30, "jobs": 30}

# magnitudes per column: subnormal to near the largest float64
EXPONENTS = (-310, -300, -150, -20, -3, 0, 0, 0, 3, 20, 150, 300, 307)


@dataclass
class Case:
    """A generated input and what must happen: ``expect`` is None (imputes) or a regex of the refusal."""

    X: object
    expect: str | None = None
    why: str = ""


# ----------------------------------------------------------------------------- strategies
def _column(draw, rng: np.random.Generator, n: int) -> tuple[pd.Series | np.ndarray, str]:
    """One column's values (a dtype, a magnitude, a gap pattern) and its kind."""
    kind = draw(st.sampled_from(["normal", "normal", "normal", "constant", "all_nan", "long_gap", "no_gap",
                                 "offset"]))
    dtype = draw(st.sampled_from(["float64", "float64", "float32", "int64", "Int64", "Float64"]))
    if dtype == "float32":
        exp = draw(st.sampled_from([-30, -3, 0, 3, 30]))
    elif dtype in ("int64", "Int64"):
        exp = draw(st.sampled_from([0, 3, 15]))
    else:
        exp = draw(st.sampled_from(EXPONENTS))
    scale = 10.0 ** exp
    values = np.clip(rng.normal(size=n), -3, 3) * scale
    if kind == "constant":
        values = np.full(n, float(rng.normal()) * scale)
    elif kind == "offset":  # a large level with small variations (precision of the mean)
        values = 1e15 * (scale / max(scale, 1.0)) + values
    if dtype in ("int64", "Int64"):
        values = np.round(values)
    gaps = np.zeros(n, dtype=bool)
    if kind == "all_nan":
        gaps[:] = True
    elif kind == "long_gap" and n > 2:
        start = int(rng.integers(0, n - 1))
        gaps[start: start + int(rng.integers(2, n + 1))] = True
    elif kind != "no_gap":
        gaps = rng.random(n) < draw(st.sampled_from([0.0, 0.1, 0.3, 0.8]))
    if dtype == "int64":
        if gaps.any():  # plain integers hold no gap: a float column with whole numbers
            return np.where(gaps, np.nan, values), kind
        return values.astype(np.int64), kind
    values = np.where(gaps, np.nan, values)
    if dtype in ("Int64", "Float64"):
        return pd.array(np.where(gaps, None, values).tolist(), dtype=dtype), kind
    return values.astype(dtype), kind


def _columns(draw, rng, n: int) -> tuple[dict, list]:
    names = draw(st.sampled_from([["a", "b", "c"], ["x y", "Ä", "0"], [0, 1, 2], ["t", 5, ("u", 1)]]))
    k = draw(st.integers(1, 3))
    cols, kinds = {}, []
    for name in names[:k]:
        cols[name], kind = _column(draw, rng, n)
        kinds.append(kind)
    return cols, kinds


@st.composite
def wide_cases(draw) -> Case:
    n = draw(st.integers(1, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cols, _ = _columns(draw, rng, n)
    index_kind = draw(st.sampled_from(["range", "range", "dates_tz", "strings", "floats", "unsorted", "duplicated"]))
    if index_kind == "dates_tz":
        index = pd.date_range("2024-03-30", periods=n, freq="h", tz="Europe/Paris")  # crosses a DST change
    elif index_kind == "strings":
        index = pd.Index([f"r{i:03d}" for i in range(n)])
    elif index_kind == "floats":
        index = pd.Index(np.cumsum(rng.random(n) + 0.01))
    else:
        index = pd.RangeIndex(n)
    expect = None
    if index_kind == "unsorted" and n >= 2:
        index = pd.Index(np.roll(np.arange(n), 1))
        expect = r"X has an unsorted time index"
    elif index_kind == "duplicated" and n >= 2:
        index = pd.Index(np.sort(rng.integers(0, n - 1, size=n)))
        index = pd.Index(np.r_[0, index[1:]]) if index.has_duplicates else pd.Index(np.zeros(n, dtype=int))
        expect = r"X has a duplicated time index"
    X = pd.DataFrame(cols, index=index)
    if expect is None and n < 2:
        expect = r"X has at most 1 sample \(row\) per series"
    elif expect is None and X.isna().all().all():
        expect = r"every column of X is entirely missing"
    return Case(X, expect, index_kind)


@st.composite
def panel_cases(draw) -> Case:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lengths = draw(st.lists(st.integers(1, 14), min_size=1, max_size=4))
    ids = draw(st.sampled_from(["strings", "ints"]))
    times = draw(st.sampled_from(["ints", "dates"]))
    id_values = np.repeat([f"s{i}" if ids == "strings" else 10 - i for i in range(len(lengths))], lengths)
    t = np.concatenate([np.arange(m) * 2 + 1 for m in lengths])
    time_values = pd.to_datetime(t, unit="D") if times == "dates" else t
    cols, _ = _columns(draw, rng, len(t))
    oddity = draw(st.sampled_from(["none", "none", "none", "interleaved", "interleaved", "unsorted", "duplicated"]))
    index = pd.MultiIndex.from_arrays([id_values, time_values], names=["id", "time"])
    X = pd.DataFrame(cols, index=index)
    expect = None
    longest = max(lengths)
    if oddity == "interleaved":  # rows of the series mixed, each series still in time order
        X = X.iloc[np.argsort(np.concatenate([np.arange(m) for m in lengths]), kind="stable")]
    elif oddity == "unsorted" and longest >= 2:
        i = int(np.argmax(lengths))
        start = sum(lengths[:i])
        order = np.arange(len(X))
        order[start], order[start + 1] = order[start + 1], order[start]
        X = X.iloc[order]
        expect = r"X: the time level is not increasing within series"
    elif oddity == "duplicated":
        X = pd.concat([X, X.iloc[[len(X) - 1]]])
        expect = r"X has duplicated \(series id, time\) index entries"
    if expect is None and longest < 2:
        expect = r"X has at most 1 sample \(row\) per series"
    elif expect is None and X.isna().all().all():
        expect = r"every column of X is entirely missing"
    return Case(X, expect, f"panel {lengths} {oddity}")


@st.composite
def array_cases(draw) -> Case:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, steps, k = draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(1, 3))
    exps = [draw(st.sampled_from(EXPONENTS)) for _ in range(k)]
    X = np.clip(rng.normal(size=(n, steps, k)), -3, 3) * 10.0 ** np.array(exps, dtype=float)
    X[rng.random(X.shape) < draw(st.sampled_from([0.0, 0.2, 0.6]))] = np.nan
    if draw(st.booleans()):
        X[..., int(rng.integers(k))] = np.nan  # an all-NaN feature
    dtype = draw(st.sampled_from(["float64", "float32", "list"]))
    expect = None
    if draw(st.integers(0, 9)) == 0:
        X[tuple(rng.integers(s) for s in X.shape)] = np.inf
        expect = r"X contains infinity"
    if dtype == "float32":
        with np.errstate(over="ignore"):
            X32 = X.astype(np.float32)
        if expect is None and np.isinf(X32).any():
            expect = r"X contains infinity"
        X = X32
    if expect is None and steps < 2:
        expect = rf"X has 1 step per series \(shape \({n}, 1, {k}\)"
    elif expect is None and np.isnan(np.asarray(X, dtype=float)).all(axis=(0, 1)).all():
        expect = r"every column of X is entirely missing"
    if dtype == "list":
        X = X.tolist()
    if draw(st.booleans()):
        X = {"X": X}
    return Case(X, expect, f"3-D {(n, steps, k)} {dtype}")


@st.composite
def shape_cases(draw) -> Case:
    """Inputs of a wrong shape or type, refused before any training."""
    kind = draw(st.sampled_from(["1d", "4d", "0d", "dict_no_x", "dict_none", "dict_dict", "empty3d", "string",
                                 "ragged"]))
    n = draw(st.integers(1, 5))
    if kind == "1d":
        return Case(np.arange(n, dtype=float), r"3-D array-like.*got a 1-D input of shape", kind)
    if kind == "4d":
        return Case(np.zeros((n, 2, 3, 2)), rf"got a 4-D input of shape \({n}, 2, 3, 2\)", kind)
    if kind == "0d":
        return Case(float(n), r"got float", kind)
    if kind == "dict_no_x":
        return Case({"data": np.zeros((n, 4, 2))}, r"under the key 'X'.*got keys \['data'\]", kind)
    if kind == "dict_none":
        return Case({"X": None}, r"X\['X'\] must be .*got NoneType", kind)
    if kind == "dict_dict":
        return Case({"X": {"X": np.zeros((n, 4, 2))}}, r"X\['X'\] must be .*got dict", kind)
    if kind == "empty3d":
        return Case(np.zeros((0, 4, n)), r"Found array with 0 sample", kind)
    if kind == "string":
        return Case("data.csv", r"got str 'data.csv'", kind)
    return Case([[1.0, 2.0], [3.0]] * n, r"inhomogeneous|sequence", kind)


# ----------------------------------------------------------------------------- the oracle
def _values(X) -> np.ndarray:
    if isinstance(X, dict):
        X = X["X"]
    if isinstance(X, pd.DataFrame):
        return X.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(X, dtype=np.float64)


def _same_input(X, before) -> None:
    if isinstance(X, dict):
        assert list(X) == list(before)
        for key in X:
            _same_input(X[key], before[key])
    elif isinstance(X, pd.DataFrame):
        pd.testing.assert_frame_equal(X, before, check_exact=True)
    elif isinstance(X, np.ndarray):
        assert X.dtype == before.dtype and np.array_equal(X, before, equal_nan=True)
    else:
        assert type(X) is type(before) and repr(X) == repr(before)


def _check_scale(out: np.ndarray, fit_values: np.ndarray) -> None:
    """Imputed values are finite and of the column's own scale (within 10 spans of its observed range)."""
    gaps = np.isnan(fit_values)
    for j in range(fit_values.shape[-1]):
        seen = fit_values[..., j][~gaps[..., j]]
        filled = out[..., j][gaps[..., j]]
        if seen.size == 0 or filled.size == 0:
            continue
        lo, hi = float(seen.min()), float(seen.max())
        with np.errstate(over="ignore"):
            span = hi - lo
        if span == 0:
            span = min(1.0, abs(lo)) or 1.0
        with np.errstate(over="ignore"):  # plus a rounding margin (a constant 5e149 comes back within an ulp)
            low, high = lo - 10 * span - 1e-12 * abs(lo), hi + 10 * span + 1e-12 * abs(hi)
        assert np.all((filled >= low) & (filled <= high)), (j, lo, hi, filled[:5])


def check_imputation(case: Case) -> str:
    """Fit a tiny imputer on ``case.X`` and transform it; assert the contract. Returns "imputed" or "refused"."""
    X = case.X
    before = copy.deepcopy(X)
    try:
        with warnings.catch_warnings(), torch_threads(1):
            warnings.simplefilter("ignore")
            imp = Imputer(**FAST).fit(X)
            out = imp.transform(X)
    except (ValueError, TypeError) as exc:
        _same_input(X, before)
        assert case.expect is not None, f"refused a good input ({case.why}): {type(exc).__name__}: {exc}"
        assert re.search(case.expect, str(exc), re.S), f"vague message for {case.why}: {exc!r}"
        return "refused"
    _same_input(X, before)
    assert case.expect is None, f"accepted a bad input ({case.why}); expected an error matching {case.expect!r}"
    inner = X["X"] if isinstance(X, dict) else X
    values = _values(X)
    if isinstance(inner, pd.DataFrame):
        assert isinstance(out, pd.DataFrame) and out.index.equals(inner.index)
        assert list(out.columns) == list(inner.columns)
        got = out.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == values.shape
        got = out
    seen = ~np.isnan(values)
    assert np.array_equal(got[seen], values[seen]), "observed cells changed"
    learned = seen.reshape(-1, values.shape[-1]).any(axis=0)
    flat = got.reshape(-1, values.shape[-1])
    assert np.isfinite(flat[:, learned]).all(), "gaps left or non-finite values in columns observed at fit"
    assert np.isnan(flat[:, ~learned]).all()  # columns entirely missing at fit keep their gaps
    _check_scale(got, values)
    return "imputed"


def check_shape(case: Case, fitted: Imputer) -> str:
    """A malformed shape or type is refused by fit and by transform, with its message."""
    before = copy.deepcopy(case.X)
    for call in (lambda: Imputer(**FAST).fit(case.X), lambda: fitted.transform(case.X)):
        with pytest.raises((ValueError, TypeError), match=case.expect):
            call()
        _same_input(case.X, before)
    return "refused"


def make_fitted2() -> Imputer:
    """A tiny imputer fitted on two features."""
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Imputer(**FAST).fit(rng.normal(size=(12, 2)))


@pytest.fixture(scope="module")
def fitted2():
    return make_fitted2()


# ----------------------------------------------------------------------------- properties: the estimator
@settings(max_examples=CI_EXAMPLES["frames"])
@given(wide_cases())
def test_wide_frames_impute_or_are_refused_clearly(case):
    check_imputation(case)


@settings(max_examples=CI_EXAMPLES["panels"])
@given(panel_cases())
def test_panels_impute_or_are_refused_clearly(case):
    check_imputation(case)


@settings(max_examples=CI_EXAMPLES["arrays"])
@given(array_cases())
def test_3d_arrays_and_dicts_impute_or_are_refused_clearly(case):
    check_imputation(case)


@settings(max_examples=CI_EXAMPLES["shapes"])
@given(shape_cases())
def test_wrong_shapes_and_types_are_refused_naming_the_shape(fitted2, case):
    check_shape(case, fitted2)


# ----------------------------------------------------------------------------- regressions found by the properties
@pytest.mark.parametrize("magnitude", [1e-320, 1e-300, 1e200, 1e300, 1.5e308])
def test_columns_of_extreme_magnitude_are_imputed_at_their_own_scale(magnitude):
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(30, 2)).clip(-1, 1), columns=["big", "unit"])
    X["big"] *= magnitude
    X.iloc[[3, 4, 17], 0] = np.nan
    X.iloc[[5, 9], 1] = np.nan
    assert check_imputation(Case(X)) == "imputed"


@pytest.mark.parametrize("level", [1e-320, 3e-5, 1e300])
def test_a_constant_column_is_imputed_at_its_level(level):
    X = pd.DataFrame({"c": np.full(20, level), "v": np.sin(np.arange(20.0))})
    X.iloc[[2, 7], 0] = np.nan
    with warnings.catch_warnings(), torch_threads(1):
        warnings.simplefilter("ignore")
        out = Imputer(**FAST).fit_transform(X)
    np.testing.assert_allclose(out["c"], level, rtol=1e-3)


def test_a_value_far_beyond_the_fitted_scale_is_refused_naming_the_column(fitted2):
    X = np.random.default_rng(2).normal(size=(12, 2))
    X[3, 1] = 1e300
    with pytest.raises(ValueError, match=r"columns \[1\] of X hold values more than 1e35 standard deviations"):
        fitted2.transform(X)


# ----------------------------------------------------------------------------- the command line on files
@st.composite
def csv_cases(draw) -> tuple[str, list[str], str | None]:
    """CSV text, extra options and the expected ``Error:`` message (None: imputes)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 20))
    kind = draw(st.sampled_from(["good"] * 5 + ["text", "empty", "header", "no_time", "duplicate_time", "inf",
                                              "one_row", "all_empty", "huge"]))
    time = pd.date_range("2024-01-01", periods=n, freq="h").astype(str)
    frame = pd.DataFrame({"time": time, "a": rng.normal(size=n), "b": rng.normal(size=n) * 1e3})
    frame.loc[rng.random(n) < 0.3, "a"] = np.nan
    expect = None
    if kind == "text":
        frame["b"] = [f"v{i}" for i in range(n)]
        expect = r"non-numeric columns \['b'\]"
    elif kind == "empty":
        return "", ["--time-col", "time"], r"cannot read .*in\.csv.*(no columns|No columns)"
    elif kind == "header":
        frame = frame.iloc[:0]
        expect = r"in\.csv has no rows"
    elif kind == "no_time":
        frame = frame.drop(columns="time")
        expect = r"time_col 'time' is not a column of .*in\.csv"
    elif kind == "duplicate_time" and n >= 2:
        frame["time"] = frame["time"].iloc[0]
        expect = r"duplicated time index"
    elif kind == "inf":
        frame.loc[n // 2, "b"] = np.inf
        expect = r"infinite values in columns \['b'\]"
    elif kind == "all_empty":
        frame["a"] = np.nan
        frame["b"] = np.nan
        expect = r"every column of X is entirely missing" if n >= 2 else None
    elif kind == "huge":
        frame["b"] = frame["b"] * 1e297
    if expect is None and n < 2 and kind != "header":
        expect = r"at most 1 sample \(row\)"
    return frame.to_csv(index=False), ["--time-col", "time"], expect


CLI_FAST = ["--epochs", "1", "--n-samples", "2", "--steps", "3", "--seed", "0", "--device", "cpu", "--threads",
            "1", "--precision", "fp32", "-q"]


def check_cli(text: str, options: list[str], expect: str | None, folder: Path) -> str:
    from typer.testing import CliRunner

    from tsimpute.cli import app

    src, dst = folder / "in.csv", folder / "out.csv"
    src.write_text(text)
    dst.unlink(missing_ok=True)
    res = CliRunner().invoke(app, ["impute", str(src), str(dst), *options, *CLI_FAST])
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit), \
        res.output
    assert src.read_text() == text  # input untouched
    if expect is not None:
        assert res.exit_code == 1, f"accepted a bad file (expected {expect!r}): {res.output}"
        assert re.search(expect, res.output, re.S), res.output
        assert not dst.exists()
        return "refused"
    assert res.exit_code == 0, res.output
    given_frame, out = pd.read_csv(src), pd.read_csv(dst)
    assert list(out.columns) == list(given_frame.columns) and len(out) == len(given_frame)
    for col in ("a", "b"):
        seen = given_frame[col].notna().to_numpy()
        np.testing.assert_allclose(out[col].to_numpy()[seen], given_frame[col].to_numpy()[seen], rtol=1e-15, atol=0)
        if seen.any():
            assert np.isfinite(out[col].to_numpy()).all()
    return "imputed"


@settings(max_examples=CI_EXAMPLES["cli"])
@given(csv_cases())
def test_cli_impute_on_csv_files_imputes_or_prints_one_error_line(tmp_path, case):
    check_cli(*case, tmp_path)


# ----------------------------------------------------------------------------- batch jobs on Parquet parts
JOB_FEATURES = ["f0", "f1", "f2"]


@st.composite
def part_cases(draw) -> tuple[list[pd.DataFrame], str | None]:
    """Parquet parts of a panel (``id``, ``hour``, f0..f2) with at most one malformation, and the expected error
    (a regex naming the part), or None."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_parts = draw(st.integers(1, 3))
    parts, sid = [], 0
    for _ in range(n_parts):
        rows = []
        for _ in range(draw(st.integers(1, 3))):
            m = int(rng.integers(2, 16))
            v = rng.normal(size=(m, 3))
            v[rng.random(v.shape) < 0.3] = np.nan
            features = dict(zip(JOB_FEATURES, v.T, strict=True))
            rows.append(pd.DataFrame({"id": f"s{sid}", "hour": np.arange(m), **features}))
            sid += 1
        parts.append(pd.concat(rows, ignore_index=True))
    kind = draw(st.sampled_from(["good"] * 3 + ["empty_part", "all_nan_column", "text", "missing_id", "duplicate",
                                              "split", "huge", "extra_column"]))
    p = int(rng.integers(n_parts))
    name = rf"part-{p:03d}\.parquet"
    expect = None
    if kind == "empty_part":
        parts[p] = parts[p].iloc[:0]
    elif kind == "all_nan_column":
        parts[p]["f1"] = np.nan
    elif kind == "text":
        for part in parts:
            part["f2"] = part["f2"].astype(str)
        expect = r"part-000\.parquet.*numeric.*'f2'"
    elif kind == "missing_id":
        parts[p] = parts[p].drop(columns="id")
        expect = name + r".*no column 'id'"
    elif kind == "duplicate":
        parts[p] = pd.concat([parts[p], parts[p].iloc[[0]]], ignore_index=True)
        expect = name + r".*duplicate \('id', 'hour'\) pair"
    elif kind == "split" and n_parts > 1:
        moved = parts[0].iloc[[0]].assign(hour=100)
        parts[n_parts - 1] = pd.concat([parts[n_parts - 1], moved], ignore_index=True)
        expect = rf"series 's0' is split between .*part-000\.parquet.*part-{n_parts - 1:03d}\.parquet"
    elif kind == "huge":
        parts[p].loc[0, "f1"] = 1e300
        expect = name + r".*columns \['f1'\] of X hold values more than 1e35 standard deviations"
    elif kind == "extra_column" and n_parts > 1:
        parts[p]["f3"] = 1.0
        other = 1 if p == 0 else 0
        expect = (rf"part-{max(p, other):03d}\.parquet.*does not have the columns and types of "
                  rf".*part-{min(p, other):03d}\.parquet")
    return parts, expect


def check_job(parts: list[pd.DataFrame], expect: str | None, imputer: Imputer, folder: Path) -> str:
    from tsimpute.jobs import run_impute_job

    src, out = folder / "in", folder / "out"
    for d in (src, out):
        if d.exists():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
    src.mkdir()
    for i, part in enumerate(parts):
        part.to_parquet(src / f"part-{i:03d}.parquet", index=False)
    try:
        with torch_threads(1):
            run_impute_job(imputer, src, out, id_col="id", time_col="hour")
    except (ValueError, TypeError) as exc:
        assert expect is not None, f"refused good parts: {exc}"
        assert re.search(expect, str(exc), re.S), f"vague message: {exc!r}"
        return "refused"
    assert expect is None, f"accepted bad parts; expected an error matching {expect!r}"
    for i, part in enumerate(parts):
        got = pd.read_parquet(out / f"part-{i:03d}.parquet")
        assert len(got) == len(part)
        merged = part.merge(got, on=["id", "hour"], suffixes=("", "_out"), validate="one_to_one")
        for col in JOB_FEATURES:
            seen = merged[col].notna().to_numpy()
            assert np.array_equal(merged[col].to_numpy()[seen], merged[col + "_out"].to_numpy()[seen])
            assert np.isfinite(merged[col + "_out"].to_numpy(dtype=np.float64)).all()
    return "imputed"


def make_job_imputer() -> Imputer:
    """A tiny imputer fitted on a panel with features f0..f2 (the columns of the generated parts)."""
    from .conftest import panel_frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Imputer(**{**FAST, "window": 8}).fit(panel_frame(n_series=4, rows=16))


@pytest.fixture(scope="module")
def job_imputer():
    pytest.importorskip("pyarrow")
    return make_job_imputer()


@settings(max_examples=CI_EXAMPLES["jobs"])
@given(part_cases())
def test_jobs_on_parquet_parts_impute_or_name_the_part(job_imputer, tmp_path, case):
    check_job(*case, job_imputer, tmp_path)
