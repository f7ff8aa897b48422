"""Pure pricing: no files, no clock, no database. The billing period is an argument."""
