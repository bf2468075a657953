# Sourced by the report scripts: `timed NAME COMMAND...` runs COMMAND and appends "NAME<TAB>seconds" to
# $OUT/times.tsv.
timed() {
    local name=$1; shift
    local t0; t0=$(date +%s)
    "$@"
    printf '%s\t%s\n' "$name" "$(( $(date +%s) - t0 ))" >> "$OUT/times.tsv"
}
