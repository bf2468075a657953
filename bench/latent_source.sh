#!/usr/bin/env bash
# Where generation draws z, measured: a perov_5 model's crystals from z ~ N(0, I) and from the training
# crystals' aggregate posterior (z = mu_i + sigma_i * eps, i uniform over the whole training split), each with
# argmax and composition-constrained types, 2,000 crystals (seed 0) with SAMPLER; CDVAE's generation metrics
# against SPLIT (default val) and novelty against the training split. Resumable; wall times in OUT/times.tsv.
#
#   [MODEL="--checkpoint RUN/best.pt"] [SPLIT=val] bench/latent_source.sh OUT [SAMPLER] [NUM]
set -euo pipefail
OUT=${1:?usage: bench/latent_source.sh OUT [SAMPLER] [NUM]}
SAMPLER=${2:-ald_fast}
NUM=${3:-2000}

SPLIT=${SPLIT:-val}   # the settings are chosen on val
source "$(dirname "$0")/timed.sh"
report_setup "--model perov_5"

for source in prior posterior; do
    pool=(); [ "$source" = posterior ] && pool=(--pool-size 0)   # the whole training split
    for types in argmax composition; do
        run="$OUT/${source}_${types}"
        timed "sample_${source}_${types}" "$G" sample "${M[@]}" --sampler "$SAMPLER" --latent-source "$source" \
            "${pool[@]}" --type-update "$types" --num "$NUM" --out "$run"
        timed "evaluate_${source}_${types}" "$G" evaluate "$run" --reference "perov_5:$SPLIT" \
            --property-model perov_5 --train perov_5:train --out "$run/eval"
    done
done
cat "$OUT/times.tsv"
