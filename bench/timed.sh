# Sourced by the report scripts. `report_setup DEFAULT_MODEL` sets G (the genlowdim command, $GENLOWDIM or
# the venv's), SPLIT ($SPLIT or test) and the model arguments M ($MODEL or DEFAULT_MODEL), and creates $OUT;
# `timed NAME COMMAND...` runs COMMAND and appends "NAME<TAB>seconds" to $OUT/times.tsv;
# `recon_both_protocols` reconstructs the first $NREC crystals of $SPLIT with $SAMPLER under each protocol and
# evaluates each.
report_setup() {
    G="${GENLOWDIM:-.venv/bin/genlowdim}"
    SPLIT=${SPLIT:-test}
    read -r -a M <<< "${MODEL:-$1}"
    mkdir -p "$OUT"
}

timed() {
    local name=$1; shift
    local t0; t0=$(date +%s)
    "$@"
    printf '%s\t%s\n' "$name" "$(( $(date +%s) - t0 ))" >> "$OUT/times.tsv"
}

recon_both_protocols() {
    for protocol in genlowdim cdvae; do
        timed "recon_$protocol" "$G" reconstruct "${M[@]}" --protocol "$protocol" --sampler "$SAMPLER" \
            --split "$SPLIT" --num "$NREC" --out "$OUT/recon_$protocol"
        timed "recon_eval_$protocol" "$G" evaluate "$OUT/recon_$protocol/predictions.extxyz" \
            --reference "$OUT/recon_$protocol/truth.extxyz" --mode reconstruction --out "$OUT/recon_$protocol/eval"
    done
}
