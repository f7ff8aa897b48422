"""Names every doctest under invoicer/ may use: ``np`` and ``BOOK`` (the shipped price book), so a rule's
worked example reads as the price sheet states it."""
import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _doctest_names(doctest_namespace):
    from invoicer.pricebook import load_default

    doctest_namespace["np"] = np
    doctest_namespace["BOOK"] = load_default()
