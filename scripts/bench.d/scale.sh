# The scale-out store against the filesystem store (issue 17). Sourced by `scripts/bench --scale`
# (which has built the release server, made $WORK in /dev/shm and set the cleanup trap).
#
# Our server on PostgreSQL + Garage (one node, both in /dev/shm, fsync off) in the first column,
# our server on the filesystem (/dev/shm) in the second, each figure alternating run by run:
# uploads (monolithic, chunked), a download, and manifest GETs (wrk); then manifest GETs through
# one scale-out instance against two (wrk split over both, as behind a load balancer).
# The machine may be shared and loaded, so each figure also has the CPU time the servers spent
# (utime + stime from /proc/PID/stat over the run): the registry process, and apart from it
# the engines (PostgreSQL's postmaster and all its backends, and Garage), per request for
# manifest GETs and per GiB for uploads and downloads.
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
PG_PID=$(head -n1 "$SCALE_PG_DIR/data/postmaster.pid")
ENGINES="+$PG_PID,$GARAGE_PID"
BOTH=(--ours "$SCALE_URL" --ref "$FS_URL" --ref-root "$WORK/fs"
    --results "$RESULTS" --runs "$RUNS")
CPU=(--ours-pids "$SCALE_PID" --ref-pids "$FS_PID" --ours-engine-pids "$ENGINES")
# CPU seconds of PIDS (comma-separated, +PID with its descendants), as client.py counts them.
cpu_of() {
    python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import client; print(client.cpu_seconds(client.pid_list(sys.argv[2])))' \
        "$REPO_DIR/scripts/bench.d" "$1"
}

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
sclient upload "${BOTH[@]}" "${CPU[@]}" --fresh --label "upload 256 MiB, monolithic (POST + PUT)" \
    --repo bench/mono --file "${FILE[256M]}" --digest "${DIGEST[256M]}" --mode postput
sclient upload "${BOTH[@]}" "${CPU[@]}" --fresh --label "upload 256 MiB, chunked (16 MiB PATCHes)" \
    --repo bench/chunked --file "${FILE[256M]}" --digest "${DIGEST[256M]}" --mode chunked \
    --chunk $((16 << 20))
# The --fresh uploads changed the file's first bytes: its digest again.
DIGEST[256M]=sha256:$(openssl dgst -sha256 -r "${FILE[256M]}" | cut -d' ' -f1)
sclient download "${BOTH[@]}" "${CPU[@]}" --label "download 256 MiB" \
    --repo bench/pull --file "${FILE[256M]}" --digest "${DIGEST[256M]}"

say "manifest GETs (wrk -t2 -c16, $WRK_DURATION)"
read -r S_M LAYER < <(client setup --url "$SCALE_URL" --repo bench/wrk --tag latest)
read -r F_M F_LAYER < <(client setup --url "$FS_URL" --repo bench/wrk --tag latest)
[[ $S_M == "$F_M" ]] || die "setup pushed different content"
ACCEPT="Accept: application/vnd.oci.image.manifest.v1+json"
sclient wrk "${BOTH[@]}" "${CPU[@]}" --duration "$WRK_DURATION" --header "$ACCEPT" \
    --label "manifest GET by tag (wrk -t2 -c16)" --ours-path /v2/bench/wrk/manifests/latest
sclient wrk "${BOTH[@]}" "${CPU[@]}" --duration "$WRK_DURATION" --header "$ACCEPT" \
    --label "manifest GET by digest (wrk -t2 -c16)" --ours-path "/v2/bench/wrk/manifests/$S_M"
sclient report --results "$RESULTS"
stop_server "$FS_PID"

say "manifest GETs: one scale-out instance against two"
OURS_ARGS=(--metadata "$SCALE_METADATA" --blobs "$SCALE_BLOBS")
start_ours scale-2 "$WORK/scale-2"
SCALE2_URL=$SRV_URL SCALE2_PID=$SRV_PID
OURS_ARGS=()
secs=${WRK_DURATION%s}
one=() two=() one_cpu=() two_cpu=() one_eng=() two_eng=()
# µs of CPU per request: (after - before) seconds / (rps * duration).
per_req() { awk -v a="$1" -v b="$2" -v r="$3" -v d="$secs" 'BEGIN {printf "%.0f", (b - a) * 1e6 / (r * d)}'; }
for i in $(seq 1 "$RUNS"); do
    c0=$(cpu_of "$SCALE_PID") e0=$(cpu_of "$ENGINES")
    r=$(scale_wrk_rps "$WRK_DURATION" "$ACCEPT" "$SCALE_URL/v2/bench/wrk/manifests/latest")
    one+=("$r") one_cpu+=("$(per_req "$c0" "$(cpu_of "$SCALE_PID")" "$r")")
    one_eng+=("$(per_req "$e0" "$(cpu_of "$ENGINES")" "$r")")
    c0=$(cpu_of "$SCALE_PID,$SCALE2_PID") e0=$(cpu_of "$ENGINES")
    r=$(scale_wrk_rps_two "$WRK_DURATION" "$ACCEPT" "$SCALE_URL/v2/bench/wrk/manifests/latest" "$SCALE2_URL/v2/bench/wrk/manifests/latest")
    two+=("$r") two_cpu+=("$(per_req "$c0" "$(cpu_of "$SCALE_PID,$SCALE2_PID")" "$r")")
    two_eng+=("$(per_req "$e0" "$(cpu_of "$ENGINES")" "$r")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "| manifest GET by tag (wrk, 16 connections in all) | one instance | two instances |"
echo "|---|---|---|"
echo "| req/s, runs | ${one[*]} | ${two[*]} |"
echo "| req/s, median | $(median "${one[@]}") | $(median "${two[@]}") |"
echo "| CPU µs per request, the instances, median (runs) | $(median "${one_cpu[@]}") (${one_cpu[*]}) | $(median "${two_cpu[@]}") (${two_cpu[*]}) |"
echo "| CPU µs per request, PostgreSQL + Garage, median (runs) | $(median "${one_eng[@]}") (${one_eng[*]}) | $(median "${two_eng[@]}") (${two_eng[*]}) |"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
