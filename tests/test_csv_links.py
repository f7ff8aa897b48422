"""A CSV roster given as a folder: a companion file that is a link is refused, never followed (it could show
any file of the machine in the error message or be billed as the roster)."""
from __future__ import annotations

import pytest

from invoicer.errors import InputError
from invoicer.roster import read_roster

CUSTOMERS = "customer_id,name,opened_on,seats\nA,甲公司,2026-10-03,5\n"
CHANGES = "customer_id,date,type,seats\n"


def test_a_linked_changes_csv_is_refused_without_reading_its_target(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:SECRET-FIRST-LINE\n")
    folder = tmp_path / "roster"
    folder.mkdir()
    (folder / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (folder / "changes.csv").symlink_to(secret)
    with pytest.raises(InputError) as err:
        read_roster(folder)
    assert "changes.csv" in str(err.value) and "link" in str(err.value)
    assert "SECRET" not in str(err.value)


def test_regular_companions_are_read(tmp_path):
    folder = tmp_path / "roster"
    folder.mkdir()
    (folder / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (folder / "changes.csv").write_text(CHANGES, encoding="utf-8")
    raw = read_roster(folder)
    assert raw.sha256  # read and packed; the frames are checked by the corpus tests
