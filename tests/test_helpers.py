"""tests/helpers.py's data guard: real data missing skips on a developer machine, fails under CI."""

from __future__ import annotations

import pytest
from helpers import require_data


@pytest.mark.parametrize(
    "ci, outcome",
    [
        (None, pytest.skip.Exception),
        ("", pytest.skip.Exception),
        ("false", pytest.skip.Exception),
        ("0", pytest.skip.Exception),
        ("true", pytest.fail.Exception),
        ("1", pytest.fail.Exception),
    ],
)
def test_missing_data_skips_locally_and_fails_under_ci(tmp_path, monkeypatch, ci, outcome):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="ghost"):
        require_data(tmp_path / "ghost", "test data")
    require_data(tmp_path, "test data")  # present: no-op
