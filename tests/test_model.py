"""The documents built for the sample have exactly the keys invoicer/model.py declares, so the schema
cannot drift silently: a new field must be declared (and said whether it is hashed) there."""
from __future__ import annotations

import copy
import datetime as dt

import pytest

from invoicer import documents, model
from invoicer.pipeline import price_roster

from .conftest import SAMPLE


@pytest.fixture(scope="module")
def sample(book):
    return price_roster(SAMPLE, book, "2026-10")


def conforms(value: dict, typed) -> None:
    keys = set(value)
    missing = typed.__required_keys__ - keys
    undeclared = keys - typed.__required_keys__ - typed.__optional_keys__
    assert not missing and not undeclared, f"{typed.__name__}: missing {sorted(missing)}, " \
                                           f"undeclared {sorted(undeclared)}"


def test_sample_invoices_lines_and_snapshots_match_the_types(sample):
    assert len(sample.invoices) == 20 and len(sample.notices) > 0
    for inv in sample.invoices:
        conforms(inv, model.Invoice)
        conforms(inv["customer"], model.Customer)
        conforms(inv["seller"], model.Seller)
        conforms(inv["rules"], model.Rules)
        assert inv["lines"]
        for line in inv["lines"]:
            conforms(line, model.Line)
    # a fresh roster run fills in every seller field
    assert set(sample.invoices[0]["seller"]) == model.Seller.__optional_keys__ | model.Seller.__required_keys__


def test_sample_notices_match_the_types(sample):
    kinds = set()
    for doc in sample.notices:
        conforms(doc, model.Notice)
        conforms(doc["notice"], model.NoticeFacts)
        conforms(doc["customer"], model.Customer)
        kinds.add(doc["notice"]["notice_kind"])
    assert kinds == {"renewal", "overdue"}


def test_numbered_invoices_and_credit_notes_match_the_types(sample):
    issued = {**sample.invoices[0], "number": "QQ-2026-000001"}
    conforms(issued, model.Invoice)
    conforms({**issued, "replaces": "QQ-2026-000000"}, model.Invoice)
    credit = documents.credit_note_for(issued, dt.date(2026, 11, 30))
    conforms(credit, model.CreditNote)
    conforms({**credit, "number": "QQ-2026-000002"}, model.CreditNote)
    for line in credit["lines"]:
        conforms(line, model.Line)
    old = {k: v for k, v in issued.items() if k != "rules"}  # recorded before rules were in the snapshot
    conforms(documents.credit_note_for(old, dt.date(2026, 11, 30)), model.CreditNote)


def test_the_content_hash_covers_exactly_the_declared_hashed_keys(sample):
    for doc in (sample.invoices[0], sample.notices[0]):
        base = documents.content_hash(doc)
        for key in doc:
            changed = copy.deepcopy(doc)
            changed[key] = [] if isinstance(doc[key], list) else "something else"  # the same shape for lines
            assert (documents.content_hash(changed) != base) == (key in model.HASHED_KEYS), key
        for key in doc["lines"][0] if doc.get("lines") else ():  # derived line values (VAT, labels) are not hashed
            changed = copy.deepcopy(doc)
            changed["lines"][0][key] = "something else"
            assert (documents.content_hash(changed) != base) == (key not in documents.DERIVED_LINE_KEYS), key
