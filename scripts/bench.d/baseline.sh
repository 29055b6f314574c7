# This build against another build of ours (a no-regression check). Sourced by
# `BENCH_BASELINE=path/to/edge-registry scripts/bench --baseline` (which has built the native
# server, made $WORK in /dev/shm and set the cleanup trap).
#
# Two servers, stores in /dev/shm, RUST_LOG=warn: "base" (the given binary) and "this" (this
# build). Figures, each the median of BENCH_RUNS runs, the servers alternating run by run, so
# whatever else the machine does weighs on both alike: manifest GET by tag and by digest (wrk
# -t2 -c16), blob HEAD (ab -k -c16), and 256 MiB uploads monolithic (POST + PUT) and chunked
# (16 MiB PATCHes), and a 256 MiB download.

[[ -x ${BENCH_BASELINE:-} ]] || die "BENCH_BASELINE must name an edge-registry binary"
echo "# edge-registry: this build against a baseline"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- nproc: $(nproc); this: edge-registry $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo '+dirty'); base: $BENCH_BASELINE (release builds, RUST_LOG=warn, stores in /dev/shm)"
echo "- each figure is the median of $RUNS runs, the two alternating"
echo

start_ours base "$WORK/base" "$BENCH_BASELINE"
BASE_URL=$SRV_URL
start_ours this "$WORK/this"
THIS_URL=$SRV_URL

ab_client() { client --names base,this "$@" --ours "$BASE_URL" --ref "$THIS_URL" --results "$RESULTS" --runs "$RUNS"; }

say "generating a 256 MiB blob"
BLOB=$WORK/blob-256M
head -c $((256 << 20)) /dev/urandom >"$BLOB"
BLOB_DIGEST=sha256:$(openssl dgst -sha256 -r "$BLOB" | cut -d' ' -f1)
ROOTS=(--ours-root "$WORK/base" --ref-root "$WORK/this")

say "uploads and a download of 256 MiB"
ab_client upload "${ROOTS[@]}" --repo bench/mono --file "$BLOB" --digest "$BLOB_DIGEST" \
    --mode postput --label "upload 256 MiB, monolithic (POST + PUT)"
ab_client upload "${ROOTS[@]}" --repo bench/chunked --file "$BLOB" --digest "$BLOB_DIGEST" \
    --mode chunked --chunk $((16 << 20)) --label "upload 256 MiB, chunked (16 MiB PATCHes)"
ab_client download "${ROOTS[@]}" --repo bench/pull --file "$BLOB" --digest "$BLOB_DIGEST" \
    --label "download 256 MiB"

say "manifest GETs and blob HEADs ($WRK_DURATION each)"
read -r M LAYER < <(client setup --url "$BASE_URL" --repo bench/wrk --tag latest)
client setup --url "$THIS_URL" --repo bench/wrk --tag latest >/dev/null
ACCEPT="Accept: application/vnd.oci.image.manifest.v1+json"
ab_client wrk --duration "$WRK_DURATION" --header "$ACCEPT" \
    --label "manifest GET by tag (wrk -t2 -c16)" --ours-path /v2/bench/wrk/manifests/latest
ab_client wrk --duration "$WRK_DURATION" --header "$ACCEPT" \
    --label "manifest GET by digest (wrk -t2 -c16)" --ours-path "/v2/bench/wrk/manifests/$M"
ab_client wrk --duration "$WRK_DURATION" --head \
    --label "blob HEAD (ab -k -c16)" --ours-path "/v2/bench/wrk/blobs/$LAYER"

client --names base,this report --results "$RESULTS"
echo
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
