"""Names every doctest under invoicer/ may use: ``np`` and ``BOOK`` (the shipped price book), so a rule's
worked example reads as the price sheet states it."""
import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _doctest_names(doctest_namespace):
    from invoicer.pricebook import load_default

    doctest_namespace["np"] = np
    doctest_namespace["BOOK"] = load_default()


# Not collected for doctests (it has none): importing it makes the importing process ignore SIGTERM, as the PDF
# pool's server must, and a test process would pass that on to every process it starts (a test's SIGTERM to a
# run was ignored, and the run went on to its end).
collect_ignore = ["invoicer/render/_forkserver.py"]
