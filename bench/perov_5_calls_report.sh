#!/usr/bin/env bash
# Split figures of a perov_5 model with a given sampler (default ald_100, the 100-call sampler chosen on val),
# each under a named protocol: generation of NUM_GENERATED crystals (and a separate run of 2,000, the size of
# the published ald_fast row), and reconstruction of the first NUM_RECON crystals of the split under both
# protocols with the same sampler. Resumable; wall times go to OUT/times.tsv.
#
#   [MODEL="--checkpoint RUN/best.pt"] [SPLIT=val] bench/perov_5_calls_report.sh OUT [SAMPLER] [NUM_GENERATED] [NUM_RECON]
#
# MODEL: the model arguments (default: the shipped model, --model perov_5); SPLIT: the reference and
# reconstruction split (default test: the once-per-model figures; val for choosing between models).
set -euo pipefail
OUT=${1:?usage: bench/perov_5_calls_report.sh OUT [SAMPLER] [NUM_GENERATED] [NUM_RECON]}
SAMPLER=${2:-ald_100}
NGEN=${3:-10000}
NREC=${4:-3785}

source "$(dirname "$0")/timed.sh"
report_setup "--model perov_5"

timed "sample_$SAMPLER" "$G" sample "${M[@]}" --sampler "$SAMPLER" --num "$NGEN" --out "$OUT/gen"
timed "evaluate_$SAMPLER" "$G" evaluate "$OUT/gen" --reference perov_5:$SPLIT --property-model perov_5 \
    --out "$OUT/gen/eval"
if [ "$NGEN" -gt 2000 ]; then
    timed "sample_${SAMPLER}_2000" "$G" sample "${M[@]}" --sampler "$SAMPLER" --num 2000 --out "$OUT/gen2000"
    timed "evaluate_${SAMPLER}_2000" "$G" evaluate "$OUT/gen2000" --reference perov_5:$SPLIT \
        --property-model perov_5 --out "$OUT/gen2000/eval"
fi
recon_both_protocols
