# The README's two commands: `make sample` runs the bundled sample, `make test` runs the tests.
# Both do all the set-up they need (scripts/setup.sh is idempotent and fast when nothing is missing).
.PHONY: setup sample test bench

setup:
	@bash scripts/setup.sh

# The sample has deliberately bad rows, so the run ends with exit code 1 (done, rows rejected).
sample: setup
	@.venv/bin/invoicer run samples/roster.xlsx --period 2026-10 --out out/sample; rc=$$?; \
	  if [ $$rc -gt 1 ]; then exit $$rc; fi; echo "sample done: see out/sample/"

# compileall: the project's own .pyc files, which Python does not write where PYTHONDONTWRITEBYTECODE is set
# (the packages' are compiled by setup); every real process the tests start imports them
# PYTHONDONTWRITEBYTECODE (set on some machines) is lifted for the tests: with it every process of the run
# (two pytest workers, the real-process helpers, the corpus child) compiles and assertion-rewrites the same
# modules again; without it the first one writes the cache and the others read it (about 15% of the CPU)
# Two pytest workers per core: a third of the suite's wall time is tests waiting on real processes (the
# watcher, crash points, two runs at once), which another worker's tests fill (measured on 2 cores: 62-64 s
# with 2 workers, 58-62 s with 4)
test: setup
	@.venv/bin/python -m compileall -q invoicer >/dev/null
	@env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m pytest -n $$(( 2 * $$(nproc) ))

bench: setup
	@.venv/bin/python benchmarks/pricing.py
	@.venv/bin/python benchmarks/render.py
