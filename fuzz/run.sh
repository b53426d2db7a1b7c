#!/usr/bin/env bash
# `make fuzz`: seeds the corpora from the fixtures, then runs each target for
# FUZZ_SECONDS (default 60) one after another; any crash, timeout (> 1 s) or RSS over
# 2 GiB fails the run. Needs nightly Rust and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-template admission config bundle}
python3 seed.py
for t in $TARGETS; do
	echo "== fuzz $t for ${SECONDS_EACH}s"
	cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
		-max_total_time="$SECONDS_EACH" -timeout=1 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
		tee "$t.log" | grep -E "^(#[0-9]+.*(INITED|DONE)|stat::|==[0-9]+==|SUMMARY|Done)" || true
	if grep -qE "ERROR: libFuzzer|deadly signal|SUMMARY: .*Sanitizer|panicked" "$t.log"; then
		echo "fuzz $t FAILED (see fuzz/$t.log and fuzz/artifacts/$t)"
		exit 1
	fi
done
