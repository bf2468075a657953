#!/usr/bin/env bash
# The shipped perov_5 model's figures on the test split, each under a named protocol, with the commands that
# made them. Settings come from the protocols, which were chosen on val (bench/tune_on_val.py).
#
#   bench/perov_5_report.sh OUT [NUM_GENERATED] [NUM_RECON] [NUM_CDVAE_ALD] [NUM_OPT]
#
# Defaults: 10,000 generated crystals (CDVAE's protocol), all 3,785 test crystals reconstructed, 100 with
# CDVAE's full ALD (5,000 decoder calls per batch), 100 optimisation starts. Every step writes its results as
# it goes and resumes when rerun with the same settings; wall times go to OUT/times.tsv.
set -euo pipefail
OUT=${1:?usage: bench/perov_5_report.sh OUT [NUM_GENERATED] [NUM_RECON] [NUM_CDVAE_ALD] [NUM_OPT]}
NGEN=${2:-10000}
NREC=${3:-3785}
NALD=${4:-100}
NOPT=${5:-100}
G="${GENLOWDIM:-.venv/bin/genlowdim}"
mkdir -p "$OUT"

source "$(dirname "$0")/timed.sh"

# generation: the genlowdim protocol (fast sampler, 500 decoder calls per crystal batch); under the cdvae
# protocol generation differs only by the sampler, so its fast-sampler row is this one
timed sample_genlowdim "$G" sample --model perov_5 --protocol genlowdim --num "$NGEN" --out "$OUT/gen"
timed evaluate_genlowdim "$G" evaluate "$OUT/gen" --reference perov_5:test --property-model perov_5 --out "$OUT/gen/eval"

# reconstruction under both protocols; the cdvae row with the fast sampler in place of ALD, then CDVAE's ALD
for protocol in genlowdim cdvae; do
    fast=(); [ "$protocol" = cdvae ] && fast=(--sampler ald_fast)
    timed "recon_$protocol" "$G" reconstruct --model perov_5 --protocol "$protocol" "${fast[@]}" \
        --split test --num "$NREC" --out "$OUT/recon_$protocol"
    timed "recon_eval_$protocol" "$G" evaluate "$OUT/recon_$protocol/predictions.extxyz" \
        --reference "$OUT/recon_$protocol/truth.extxyz" --mode reconstruction --out "$OUT/recon_$protocol/eval"
done
timed recon_cdvae_ald "$G" reconstruct --model perov_5 --protocol cdvae --split test --num "$NALD" \
    --batch-size "$NALD" --out "$OUT/recon_cdvae_ald"
timed recon_eval_cdvae_ald "$G" evaluate "$OUT/recon_cdvae_ald/predictions.extxyz" \
    --reference "$OUT/recon_cdvae_ald/truth.extxyz" --mode reconstruction --out "$OUT/recon_cdvae_ald/eval"

# property optimisation: CDVAE's unbounded Adam (fast sampler for the decodes) and the genlowdim protocol
for protocol in cdvae genlowdim; do
    fast=(); [ "$protocol" = cdvae ] && fast=(--sampler ald_fast)
    timed "optimize_$protocol" "$G" optimize --model perov_5 --protocol "$protocol" "${fast[@]}" \
        --num "$NOPT" --out "$OUT/opt_$protocol"
done
cat "$OUT/times.tsv"
