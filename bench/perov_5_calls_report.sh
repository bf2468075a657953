#!/usr/bin/env bash
# Test-split figures of the shipped perov_5 model with a given sampler (default ald_100, the 100-call sampler
# chosen on val), each under a named protocol: generation of NUM_GENERATED crystals (and of the first 2,000 of
# them, the size of the published ald_fast row), and reconstruction of NUM_RECON test crystals under both
# protocols with the same sampler. Resumable; wall times go to OUT/times.tsv.
#
#   bench/perov_5_calls_report.sh OUT [SAMPLER] [NUM_GENERATED] [NUM_RECON]
set -euo pipefail
OUT=${1:?usage: bench/perov_5_calls_report.sh OUT [SAMPLER] [NUM_GENERATED] [NUM_RECON]}
SAMPLER=${2:-ald_100}
NGEN=${3:-10000}
NREC=${4:-3785}
G="${GENLOWDIM:-.venv/bin/genlowdim}"
mkdir -p "$OUT"

source "$(dirname "$0")/timed.sh"

timed "sample_$SAMPLER" "$G" sample --model perov_5 --sampler "$SAMPLER" --num "$NGEN" --out "$OUT/gen"
timed "evaluate_$SAMPLER" "$G" evaluate "$OUT/gen" --reference perov_5:test --property-model perov_5 \
    --out "$OUT/gen/eval"
timed "sample_${SAMPLER}_2000" "$G" sample --model perov_5 --sampler "$SAMPLER" --num 2000 --out "$OUT/gen2000"
timed "evaluate_${SAMPLER}_2000" "$G" evaluate "$OUT/gen2000" --reference perov_5:test --property-model perov_5 \
    --out "$OUT/gen2000/eval"
for protocol in genlowdim cdvae; do
    timed "recon_$protocol" "$G" reconstruct --model perov_5 --protocol "$protocol" --sampler "$SAMPLER" \
        --split test --num "$NREC" --out "$OUT/recon_$protocol"
    timed "recon_eval_$protocol" "$G" evaluate "$OUT/recon_$protocol/predictions.extxyz" \
        --reference "$OUT/recon_$protocol/truth.extxyz" --mode reconstruction --out "$OUT/recon_$protocol/eval"
done
