"""Pure pricing: no files, no clock, no database. The billing period is an argument.

rules.py     the price sheet's rules, one named function each (start here for "how is X priced")
engine.py    price_period: replays every account's changes at once and applies the rules -> lines
dates.py     calendar arithmetic (months clamped at month end, terms from opened_on)
workdays.py  Chinese working days, for the renewal completion date
groups.py    running sums per customer over sorted rows (the engine's replay)
reference.py a plain row-by-row re-implementation, the oracle of the property tests (not used in runs)
"""
