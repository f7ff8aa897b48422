"""Running quantities per customer over change rows sorted by customer: numpy without a loop per customer.

Rows are sorted by customer code; ``gstart`` gives, for each row, the index of its customer's first row.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def group_starts(code: np.ndarray) -> np.ndarray:
    """For rows sorted by customer code: the index of the first row of each row's customer.

    >>> group_starts(np.array([0, 0, 1, 1, 1, 4])).tolist()
    [0, 0, 2, 2, 2, 5]
    """
    n = len(code)
    if not n:
        return np.zeros(0, np.int64)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = code[1:] != code[:-1]
    return np.maximum.accumulate(np.where(new_group, np.arange(n), 0))


def group_cumsum(x: np.ndarray, gstart: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum of x within runs of equal customer (rows sorted by customer).

    >>> group_cumsum(np.array([1, 2, 3, 4]), np.array([0, 0, 2, 2])).tolist()
    [1, 3, 3, 7]
    """
    c = np.cumsum(x, dtype=np.int64)
    base = np.where(gstart > 0, c[np.maximum(gstart - 1, 0)], 0)
    return c - base


def first_in_group(mask: np.ndarray, gstart: np.ndarray) -> np.ndarray:
    """True on the first row of each customer where ``mask`` is True.

    >>> first_in_group(np.array([False, True, True, True]), np.array([0, 0, 2, 2])).tolist()
    [False, True, True, False]
    """
    m = mask.astype(np.int64)
    return mask & (group_cumsum(m, gstart) == 1)


def sum_by_code(x: np.ndarray, code: np.ndarray, size: int) -> np.ndarray:
    """Sum of x per customer code 0..size-1 (0 for a code with no rows)."""
    sums = pd.Series(x, dtype="int64").groupby(code).sum()
    out = np.zeros(size, dtype=np.int64)
    out[sums.index.to_numpy()] = sums.to_numpy()
    return out
