# The scale-out store against the filesystem store (issue 17). Sourced by `scripts/bench --scale`
# (which has built the release server, made $WORK in /dev/shm and set the cleanup trap).
#
# Our server on PostgreSQL + Garage (one node, both in /dev/shm, fsync off) in the first column,
# our server on the filesystem (/dev/shm) in the second, each figure alternating run by run:
# uploads (monolithic, chunked), a download, and manifest GETs (wrk); then manifest GETs through
# one scale-out instance against two (wrk split over both, as behind a load balancer).
# PostgreSQL round trips per manifest GET are counted by `cargo test --test scale` (it prints
# them), not here.

source "$REPO_DIR/scripts/scale-engines"

say "PostgreSQL and Garage in $WORK"
scale_start_postgres "$WORK/pg"
scale_start_garage "$WORK/garage"
PIDS+=("$GARAGE_PID")
OURS_ARGS=(--metadata "$SCALE_METADATA" --blobs "$SCALE_BLOBS")
scale_wait_for_garage "$OURS_BIN" "$WORK/probe"
start_ours scale "$WORK/scale-1"
SCALE_PID=$SRV_PID SCALE_URL=$SRV_URL
OURS_ARGS=()
start_ours filesystem "$WORK/fs"
FS_PID=$SRV_PID FS_URL=$SRV_URL
sclient() { python3 "$CLIENT" --names scale-out,filesystem "$@"; }
BOTH=(--ours "$SCALE_URL" --ref "$FS_URL" --ref-root "$WORK/fs"
    --results "$RESULTS" --runs "$RUNS")

echo "# edge-registry: the scale-out store (PostgreSQL + Garage) against the filesystem store"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); nproc: $(nproc); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- ours: edge-registry $(git rev-parse --short HEAD 2>/dev/null || echo '?') (release build, RUST_LOG=warn); PostgreSQL $("$(scale_pg_bin postgres)" --version | awk '{print $3}') and Garage $("$(scale_garage_bin)" --version 2>/dev/null | head -n1 | awk '{print $2}'), both on /dev/shm with fsync off, all on 127.0.0.1"
echo "- each figure is the median of $RUNS runs, the two columns alternating; MB = 10^6 bytes"
echo

say "generating blobs"
declare -A FILE DIGEST
for spec in 16M:16 256M:256; do
    key=${spec%%:*}
    FILE[$key]=$WORK/blob-$key
    head -c $((${spec##*:} << 20)) /dev/urandom >"${FILE[$key]}"
    DIGEST[$key]=sha256:$(openssl dgst -sha256 -r "${FILE[$key]}" | cut -d' ' -f1)
done

say "uploads and a download (256 MiB)"
sclient upload "${BOTH[@]}" --fresh --label "upload 256 MiB, monolithic (POST + PUT)" \
    --repo bench/mono --file "${FILE[256M]}" --digest "${DIGEST[256M]}" --mode postput
sclient upload "${BOTH[@]}" --fresh --label "upload 256 MiB, chunked (16 MiB PATCHes)" \
    --repo bench/chunked --file "${FILE[256M]}" --digest "${DIGEST[256M]}" --mode chunked \
    --chunk $((16 << 20))
sclient download "${BOTH[@]}" --label "download 256 MiB" \
    --repo bench/pull --file "${FILE[256M]}" --digest "${DIGEST[256M]}"

say "manifest GETs (wrk -t2 -c16, $WRK_DURATION)"
read -r S_M LAYER < <(client setup --url "$SCALE_URL" --repo bench/wrk --tag latest)
read -r F_M F_LAYER < <(client setup --url "$FS_URL" --repo bench/wrk --tag latest)
[[ $S_M == "$F_M" ]] || die "setup pushed different content"
ACCEPT="Accept: application/vnd.oci.image.manifest.v1+json"
sclient wrk "${BOTH[@]}" --duration "$WRK_DURATION" --header "$ACCEPT" \
    --label "manifest GET by tag (wrk -t2 -c16)" --ours-path /v2/bench/wrk/manifests/latest
sclient wrk "${BOTH[@]}" --duration "$WRK_DURATION" --header "$ACCEPT" \
    --label "manifest GET by digest (wrk -t2 -c16)" --ours-path "/v2/bench/wrk/manifests/$S_M"
sclient report --results "$RESULTS"
stop_server "$FS_PID"

say "manifest GETs: one scale-out instance against two"
OURS_ARGS=(--metadata "$SCALE_METADATA" --blobs "$SCALE_BLOBS")
start_ours scale-2 "$WORK/scale-2"
SCALE2_URL=$SRV_URL
OURS_ARGS=()
one=() two=()
for i in $(seq 1 "$RUNS"); do
    one+=("$(scale_wrk_rps "$WRK_DURATION" "$ACCEPT" "$SCALE_URL/v2/bench/wrk/manifests/latest")")
    two+=("$(scale_wrk_rps_two "$WRK_DURATION" "$ACCEPT" "$SCALE_URL/v2/bench/wrk/manifests/latest" "$SCALE2_URL/v2/bench/wrk/manifests/latest")")
done
echo
echo "| manifest GET by tag, req/s (wrk, 16 connections in all) | one instance | two instances |"
echo "|---|---|---|"
echo "| runs | ${one[*]} | ${two[*]} |"
echo "| median | $(printf '%s\n' "${one[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') | $(printf '%s\n' "${two[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') |"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
