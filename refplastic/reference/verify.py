"""Compare someone's numbers (THEIRS) with a reference file, quantity by quantity.

For each case of the reference and each dataset present in both files, with a = theirs, b = the
reference,

    error = max |a - b| / max(max |b|, tiny)          (tiny: the smallest normal float64)

over the whole dataset, except that grads/<name> and params/<name> divide by max |flat_grad| and
max |flat_params| (one parameter's gradient may be all but zero, e.g. a bias before train-mode
BatchNorm). For eigenvalue vectors this is the error relative to the largest |lambda|. Statistics
(stats/names, stats/values) are compared one by one as stats/<key>, with error
|a - b| / max(|b|, 1): relative above 1, absolute below (fractions, means near 0). A dataset
matches when error <= rtol: by default 1e-8 for float64 and 1e-4 for float32 reference data,
``rtol`` overrides both (other float dtypes: 1e-4); integer data (class labels,
num_batches_tracked) and anything not numeric must be equal. A shape
difference is a mismatch, and so are stats/names and stats/values of THEIRS that cannot be paired,
and a group or a soft or external link (never followed; dangling or not) where the reference has
a dataset or, for a link, a group holding one.
A case missing from THEIRS, or sharing no computed quantity with the reference (the given
inputs, targets, parameters, buffers and HVP directions alone check nothing), fails; a
dataset missing from THEIRS is reported but does not fail.
"""

from dataclasses import dataclass

import numpy as np

from .format import GROUP, read_datasets

DEFAULT_RTOL = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-4}
TINY = np.finfo(np.float64).tiny
# table columns, in order, and the datasets each gathers (first match wins)
COLUMNS = {
    "given": ("inputs", "targets", "params/", "buffers/", "flat_params", "hvp/vectors"),
    "outputs": ("outputs",), "loss": ("loss",), "grad": ("grads/", "flat_grad"), "hvp": ("hvp/products",),
    "jacobian": ("jacobian",), "hessian": ("hessian",), "hess_eig": ("hessian_eigenvalues",), "ggn": ("ggn",),
    "ggn_eig": ("ggn_eigenvalues",), "per_example": ("per_example_grads",), "optim": ("optim/",),
    "stats": ("stats/",),
}
SCALE_OF = {"grads/": "flat_grad", "params/": "flat_params"}
STATS_FLOOR = 1.0


@dataclass
class Row:
    """One comparison. ``status``: ok, mismatch, missing (dataset not in THEIRS), missing case,
    nothing compared (a case with no computed quantity in common) or extra case (only in THEIRS)."""

    case: str
    quantity: str
    status: str
    error: float = None
    rtol: float = None
    detail: str = ""

    @property
    def failed(self):
        return self.status in ("mismatch", "missing case", "nothing compared")


def verify_files(theirs_path, reference_path=None, rtol=None):
    """``(rows, ok)`` comparing THEIRS with a reference file (default: the built-in suite, computed now)."""
    if reference_path is None:
        from .suite import suite_datasets
        reference = suite_datasets()
    else:
        reference = read_datasets(reference_path)
    rows = compare(read_datasets(theirs_path), reference, rtol)
    return rows, not any(row.failed for row in rows)


def compare(theirs, reference, rtol=None):
    """Rows for ``{case: {path: array}}`` dicts (see the module docstring)."""
    rows = []
    for case, ref in reference.items():
        if case not in theirs:
            rows.append(Row(case, "", "missing case"))
            continue
        found = getattr(theirs[case], "non_datasets", {})
        ref, mine = split_statistics(ref), split_statistics(theirs[case])
        case_rows = [_compare(case, path, mine.get(path), b, ref, rtol, not_a_dataset(found, path))
                     for path, b in ref.items()]
        problem = not_a_dataset(found, "stats/names") or not_a_dataset(found, "stats/values") \
            or statistics_problem(theirs[case])
        if problem:
            case_rows.append(Row(case, "stats/names", "mismatch", detail=problem))
        if all(row.status == "missing" for row in case_rows if column_of(row.quantity) != "given"):
            case_rows.append(Row(case, "", "nothing compared"))
        rows += case_rows
    rows += [Row(case, "", "extra case") for case in theirs if case not in reference]
    return rows


def not_a_dataset(found, path):
    """Why THEIRS has no dataset at ``path`` although it has something there, or ``None``: a group or
    link at ``path``, or a link where a group above it should be (``found``: ``{path: what}`` of
    the groups and links of THEIRS, :attr:`~refplastic.reference.format.CaseDatasets.non_datasets`)."""
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        where, what = "/".join(parts[:i]), found.get("/".join(parts[:i]))
        if what is not None and (i == len(parts) or what != GROUP):
            expected = "a dataset" if i == len(parts) else "a group"
            return f"{where} is {what}, not {expected}" + ("" if what == GROUP else " (links are not followed)")
    return None


def _compare(case, path, a, b, ref, rtol, obstacle=None):
    b = np.asarray(b)
    tol = 0.0
    if np.issubdtype(b.dtype, np.floating):
        tol = rtol if rtol is not None else DEFAULT_RTOL.get(b.dtype, DEFAULT_RTOL[np.dtype(np.float32)])
    if a is None and obstacle:
        return Row(case, path, "mismatch", rtol=tol, detail=obstacle)
    if a is None:
        return Row(case, path, "missing", rtol=tol)
    a = np.asarray(a)
    if a.shape != b.shape:
        return Row(case, path, "mismatch", rtol=tol, detail=f"shape {a.shape} != reference {b.shape}")
    if not np.issubdtype(b.dtype, np.number):
        equal = a.dtype == b.dtype and np.array_equal(a, b)
        return Row(case, path, "ok" if equal else "mismatch", 0.0 if equal else None, tol, "" if equal else "differs")
    if not np.issubdtype(a.dtype, np.number):
        return Row(case, path, "mismatch", rtol=tol, detail=f"not numbers ({a.dtype})")
    if np.iscomplexobj(a) and not np.iscomplexobj(b):
        return Row(case, path, "mismatch", rtol=tol, detail=f"complex numbers ({a.dtype}) where the reference is real")
    if path.startswith("stats/"):
        error = relative_error(a, b, max(abs(float(b)), STATS_FLOOR))
    else:
        scale_path = next((s for prefix, s in SCALE_OF.items() if path.startswith(prefix) and s in ref), path)
        error = relative_error(a, b, ref[scale_path])
    status = "ok" if error <= tol else "mismatch"  # NaN fails
    return Row(case, path, status, error, tol)


def split_statistics(arrays):
    """``arrays`` with stats/names and stats/values replaced by one 0-d array per statistic, stats/<key>."""
    names, values = arrays.get("stats/names"), arrays.get("stats/values")
    if names is None or values is None or np.shape(names) != np.shape(values) or np.ndim(values) != 1:
        return arrays
    out = {k: v for k, v in arrays.items() if k not in ("stats/names", "stats/values")}
    for name, value in zip(names, values):
        out[f"stats/{name.decode() if isinstance(name, bytes) else name}"] = np.asarray(value)
    return out


def statistics_problem(arrays):
    """Why stats/names and stats/values cannot be paired (so no statistic of THEIRS is compared), or ``None``."""
    names, values = arrays.get("stats/names"), arrays.get("stats/values")
    if names is None and values is None:
        return None
    if names is None or values is None:
        return "stats/names and stats/values must both be present"
    if np.ndim(values) != 1 or np.shape(names) != np.shape(values):
        return f"stats/names and stats/values must be 1-D of one length, got {np.shape(names)} and {np.shape(values)}"
    if np.asarray(names).dtype.kind not in "SUO" or not all(isinstance(n, (bytes, str)) for n in names):
        return f"stats/names must be strings, got {np.asarray(names).dtype}"
    if len(set(names)) != len(names):
        return "stats/names has repeated names"
    return None


def relative_error(a, b, scale_of=None):
    """``max |a - b| / max(max |scale_of|, tiny)``, computed in float64; ``scale_of`` defaults to b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.max(np.abs(np.asarray(b if scale_of is None else scale_of, np.float64)), initial=0.0)
    return float(np.max(np.abs(a - b), initial=0.0) / max(scale, TINY))


def column_of(path):
    """The table column a dataset belongs to (its first path component if none of :data:`COLUMNS`)."""
    for column, prefixes in COLUMNS.items():
        if any(path == p or (p.endswith("/") and path.startswith(p)) for p in prefixes):
            return column
    return path.split("/")[0]


def format_table(rows):
    """The case x quantity table of worst errors, then one line per mismatch or failure, and one per
    quantity missing from THEIRS (naming the cases).

    Cells: the worst error of the column's datasets; ``!`` marks a mismatch; ``-`` a dataset missing
    from THEIRS (not a failure); empty: nothing of that kind in the reference.
    """
    cases = list(dict.fromkeys(row.case for row in rows if row.status != "extra case"))
    compared = [row for row in rows if row.quantity]
    cells = {}
    for row in compared:
        key = (row.case, column_of(row.quantity))
        cells[key] = _worse(cells.get(key), row)
    columns = list(COLUMNS) + [c for c in dict.fromkeys(column_of(r.quantity) for r in compared) if c not in COLUMNS]
    columns = [c for c in columns if any((case, c) in cells for case in cases)]
    width = max([len(c) for c in cases] + [4])
    widths = [max(len(c), 8) for c in columns]
    lines = [" ".join([f"{'case':<{width}}"] + [f"{c:>{w}}" for c, w in zip(columns, widths)])]
    for case in cases:
        cells_of_case = [f"{_cell(cells.get((case, c))):>{w}}" for c, w in zip(columns, widths)]
        missing_case = any(r.case == case and r.status == "missing case" for r in rows)
        lines.append(" ".join([f"{case:<{width}}"] + (["missing from THEIRS"] if missing_case else cells_of_case)))
    rtols = ", ".join(f"{t:g}" for t in sorted({r.rtol for r in compared if r.rtol}))
    lines.append(f"worst error per cell (docs/reference-format.md), rtol {rtols}; ! mismatch, - missing from THEIRS")
    missing = {}
    for row in rows:
        what = f"{row.case}: {row.quantity}" if row.quantity else row.case
        if row.status == "mismatch":
            lines.append(f"MISMATCH {what}: {row.detail or f'error {row.error:.3e} > rtol {row.rtol:g}'}")
        elif row.status == "missing":
            missing.setdefault("stats" if row.quantity.startswith("stats/") else row.quantity, {})[row.case] = None
        elif row.status != "ok":
            lines.append(f"{'FAILED' if row.failed else 'note'}: {what}: {row.status}")
    compared_cases = {row.case for row in compared}
    for quantity, in_cases in missing.items():
        where = f"all {len(in_cases)} cases" if len(in_cases) == len(compared_cases) > 1 else ", ".join(in_cases)
        lines.append(f"missing from THEIRS (not a failure): {quantity} in {where}")
    failed = sum(row.failed for row in rows)
    lines.append(f"FAILED: {failed} problem(s)" if failed else f"OK: {len(cases)} case(s) match")
    return "\n".join(lines)


def _worse(current, row):
    """The row that should represent a cell: a mismatch over an ok over a missing, then the larger error."""
    return row if current is None else max(current, row, key=_badness)


def _badness(row):
    rank = {"missing": 0, "ok": 1, "mismatch": 2}[row.status]
    return rank, np.inf if row.error is None or np.isnan(row.error) else row.error


def _cell(row):
    if row is None:
        return ""
    if row.status == "missing":
        return "-"
    if row.error is None or np.isnan(row.error):
        return "!"
    return f"{row.error:.1e}" + ("!" if row.status == "mismatch" else "")
