# Are chunked uploads steady (issue 10)? Sourced by `scripts/bench --steady` (which has built
# the native server, made $WORK in /dev/shm and set the cleanup trap).
#
# One blob (BENCH_STEADY_MIB, default 256 MiB) is uploaded to our server (store in /dev/shm,
# RUST_LOG=off) as POST + PUT with the whole body ("monolithic") and as PATCHes of
# BENCH_STEADY_CHUNK_MIB (default 16) plus an empty PUT ("chunked"), alternating, BENCH_RUNS
# times (default 7 here). The goal: chunked's median at least 90% of monolithic's, and no run of
# either below 75% of its median; the status is 1 when ours does not meet it.
#
# BENCH_STEADY_BASELINE=path/to/edge-registry starts that binary too (say a build of the
# commit before a change: `git worktree add /tmp/base COMMIT`, `cargo build --release` there) and
# interleaves it run by run with ours, for an A/B in the same run.
#
# The machine's other work shows in each run's "others busy" share (about 5-10% when quiet):
# a run far below its median with others busy far above that was slowed by them; repeat.

S_MIB=${BENCH_STEADY_MIB:-256}
S_CHUNK_MIB=${BENCH_STEADY_CHUNK_MIB:-16}
S_RUNS=${BENCH_RUNS:-7}
for v in S_MIB S_CHUNK_MIB S_RUNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number"
done

echo "# edge-registry: chunked vs monolithic uploads"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- ours: edge-registry $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo '+dirty') (release build, RUST_LOG=off, store in /dev/shm)"
echo "- $S_MIB MiB blob; chunked = ${S_CHUNK_MIB} MiB PATCHes; $S_RUNS runs, modes (and servers) alternating; MB = 10^6 bytes"
echo

say "generating a $S_MIB MiB blob in $WORK"
S_FILE=$WORK/blob-steady
head -c $((S_MIB << 20)) /dev/urandom >"$S_FILE"
S_DIGEST=sha256:$(openssl dgst -sha256 -r "$S_FILE" | cut -d' ' -f1)

S_TARGETS=()
OURS_LOG=off start_ours steady-ours "$WORK/steady-ours"
S_TARGETS+=(--target "ours=$SRV_URL=$WORK/steady-ours=$SRV_PID")
if [[ -n ${BENCH_STEADY_BASELINE:-} ]]; then
    [[ -x $BENCH_STEADY_BASELINE ]] || die "BENCH_STEADY_BASELINE=$BENCH_STEADY_BASELINE is not executable"
    OURS_LOG=off start_ours steady-baseline "$WORK/steady-baseline" "$BENCH_STEADY_BASELINE"
    S_TARGETS+=(--target "baseline=$SRV_URL=$WORK/steady-baseline=$SRV_PID")
fi

STEADY_STATUS=0
client steady "${S_TARGETS[@]}" --repo bench/steady --file "$S_FILE" --digest "$S_DIGEST" \
    --chunk $((S_CHUNK_MIB << 20)) --runs "$S_RUNS" --check || STEADY_STATUS=$?
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
