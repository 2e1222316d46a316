#!/bin/bash
# The Fashion-MNIST case study of benchmarks/sweeps.md: each spec in turn, once its checkpoint exists.
# Results go to $OUT/<name> (default /work/runs_shared/sweeps); a rerun resumes where it stopped.
OUT=${OUT:-/work/runs_shared/sweeps}
HERE=$(cd "$(dirname "$0")" && pwd)
for name in ${SPECS:-fashion_mlp fashion_msnn fashion_mlp_wires fashion_vgg fashion_vgg_dw}; do
  ck=$(grep '^checkpoint' "$HERE/$name.toml" | cut -d'"' -f2)
  while [ ! -f "$ck" ]; do echo "$(date -u +%T) waiting for $ck"; sleep 60; done
  echo "$(date -u +%T) start $name"
  python3 -m memsim sweep run "$HERE/$name.toml" --out "$OUT/$name" --workers ${WORKERS:-2} --yes
  rc=$?
  echo "$(date -u +%T) end $name (rc $rc)"
done
