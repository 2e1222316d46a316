#!/bin/bash
# The Fashion-MNIST design-space study of benchmarks/sweeps.md from a fresh clone: the study beside this script trains
# its networks (memsim train's configs) where their checkpoints are absent, runs its sweeps (one full grid per
# question, 3 chips, the full test set), and report.py draws the figures and writes the tables of sweeps.md.
# A rerun resumes where it stopped (finished epochs and points are kept).
#   OUT=studies/fashion_dse WORKERS=2 benchmarks/sweeps/run_case_study.sh          # the full study (hours: sweeps.md)
#   QUICK=1 benchmarks/sweeps/run_case_study.sh                                    # the reduced run, in minutes
# Extra arguments go to memsim sweep study (e.g. --data-dir DIR, --backend ray --address auto).
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -n "$QUICK" ]; then
  OUT=${OUT:-studies/fashion_dse_quick}
  python3 -m memsim sweep study "$HERE/study.toml" --quick --out "$OUT" --workers "${WORKERS:-2}" "$@"
  python3 "$HERE/report.py" --study "$OUT" --out "$OUT/report" --tables "$OUT/report/tables.md"
  echo "quick results in $OUT, figures and tables in $OUT/report (a smoke test, not for sweeps.md)"
else
  OUT=${OUT:-studies/fashion_dse}
  python3 -m memsim sweep study "$HERE/study.toml" --out "$OUT" --workers "${WORKERS:-2}" --yes "$@"
  python3 "$HERE/report.py" --study "$OUT" --out "$HERE" --tables "$HERE/tables.md"
fi
