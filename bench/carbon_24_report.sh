#!/usr/bin/env bash
# Split figures of a carbon_24 model with a given sampler: generation of NUM_GENERATED crystals against the
# split, reconstruction of the first NUM_RECON crystals of the split under both protocols, and CSP best of 20
# on the first NUM_CSP compositions. Resumable; wall times go to OUT/times.tsv.
#
#   [MODEL="--checkpoint RUN/best.pt"] [SPLIT=test] bench/carbon_24_report.sh OUT [SAMPLER] [NUM_GENERATED] [NUM_RECON] [NUM_CSP]
#
# MODEL: the model arguments (default: the shipped model, --model carbon_24). The reference of generation is
# carbon_24's own SPLIT (shipped in datasets/carbon_24/); reconstruction and CSP read SPLIT of the model's
# dataset (the shipped model's test split is carbon_24's).
set -euo pipefail
OUT=${1:?usage: bench/carbon_24_report.sh OUT [SAMPLER] [NUM_GENERATED] [NUM_RECON] [NUM_CSP]}
SAMPLER=${2:-ald_100}
NGEN=${3:-10000}
NREC=${4:-2030}
NCSP=${5:-100}

source "$(dirname "$0")/timed.sh"
report_setup "--model carbon_24"

recon_both_protocols
timed "sample_$SAMPLER" "$G" sample "${M[@]}" --sampler "$SAMPLER" --num "$NGEN" --out "$OUT/gen"
timed "evaluate_$SAMPLER" "$G" evaluate "$OUT/gen" --reference "carbon_24:$SPLIT" --out "$OUT/gen/eval"
timed "csp20" "$G" csp "${M[@]}" --split "$SPLIT" --num "$NCSP" --samples 20 --sampler "$SAMPLER" --out "$OUT/csp20"
timed "csp20_eval" "$G" evaluate "$OUT/csp20/predictions.extxyz" --reference "$OUT/csp20/truth.extxyz" \
    --mode reconstruction --out "$OUT/csp20/eval"
