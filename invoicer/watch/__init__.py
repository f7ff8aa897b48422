"""The drop folder: resellers drop roster workbooks into INBOX/<reseller>/; each is billed exactly once.

Rooms: ``names`` (file-name rules: which names are rosters, the month a name holds, a folder's default
prefix, safe display of hostile names), ``claim`` (the claim protocol: looking at, taking and reading an
entry without following links), ``service`` (the event loop, one claimed file's life, the PDF workers'
lifetime) and ``texts`` (what the reseller and the clerk are told). Importing this package does not import
pandas: the pipeline is imported when the first file is billed.
"""
from .names import (
           ignored,
           period_from_name,
           prefix_from_folder,
           previous_month,
           resolve_default_period,
)
from .service import Claim, Watcher, WatchOptions

__all__ = ["Claim", "WatchOptions", "Watcher", "ignored", "period_from_name", "prefix_from_folder",
           "previous_month", "resolve_default_period"]
