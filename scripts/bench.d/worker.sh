# The Worker half of the benchmark (issue 6); sourced by `scripts/bench --worker` (which has
# built the native server, made $WORK in /dev/shm and set the cleanup trap).
#
# The Worker runs in the real workerd runtime under `wrangler dev --local` (scripts/worker-dev:
# local R2 + KV, persisted here into /dev/shm like the native store), next to our native server
# on 127.0.0.1, in the same run. Columns: worker, native; ratio worker/native.
#
#   - uploads of a 256 MiB blob: one POST ?digest= (on the Worker: straight into R2 with R2's
#     sha256 check, no byte through wasm), POST + PUT with the body (the PUT is a session's
#     last chunk: through wasm, like a PATCH), chunked in 16 MiB PATCHes (the
#     bytes pass through wasm and are hashed there); then its download;
#     each upload is of new content, and the CPU seconds the servers' processes spent on it
#     per GiB are recorded with it;
#   - a fresh `wrangler dev` (and a fresh native server) per run: the first request after start
#     against the median of the next 20 (each on a new connection; timed from the connection
#     being open to the whole response read; the Worker's first request is sent once wrangler
#     prints "Ready on", as wrangler's proxy accepts connections, and holds them, while the wasm
#     is still being built), then a 1 GiB chunked push: CPU seconds per GiB (utime + stime from
#     /proc/PID/stat of every workerd process) and peak RSS (VmHWM, summed over them);
#   - sha256 alone: the same sha2 crate built for wasm32 and run in Node's V8, and natively;
#   - the wasm size (scripts/build-worker, as wrangler's custom build prints it).
#
#   BENCH_WORKER_MIB=256 BENCH_WORKER_BIG_MIB=1024 BENCH_WORKER_CHUNK_MIB=16   (the defaults)

MIB=${BENCH_WORKER_MIB:-256}
BIG_MIB=${BENCH_WORKER_BIG_MIB:-1024}
CHUNK_MIB=${BENCH_WORKER_CHUNK_MIB:-16}
for v in MIB BIG_MIB CHUNK_MIB; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_WORKER_$v must be a positive number of MiB"
done
CHUNK=$((CHUNK_MIB << 20))
COLD_COUNT=20

wclient() { python3 "$CLIENT" --names worker,native "$@"; }

mib_label() { # 256 → "256 MiB", 1024 → "1 GiB"
    if (($1 % 1024 == 0)); then echo "$(($1 / 1024)) GiB"; else echo "$1 MiB"; fi
}

# Starts scripts/worker-dev into $WORK/NAME; sets W_URL, W_PIDS (the workerd processes),
# W_STATE, W_READY_S (seconds from start to ready). With no-probe, it returns on wrangler's
# "Ready on" line without having sent a request.
start_worker() { # name [no-probe]
    local name=$1 state=$WORK/$1 line t0
    mkdir -p "$state"
    WRANGLERS+=("$state")
    t0=$(date +%s.%N)
    if ! line=$(WORKER_DEV_NO_PROBE=${2:-} "$REPO_DIR/scripts/worker-dev" "$state" 2>"$state/worker-dev.err"); then
        die "wrangler dev did not start: $(tail -n 40 "$state/worker-dev.err")"
    fi
    W_READY_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    read -r W_URL W_PIDS <<<"$line"
    [[ $W_URL == http://127.0.0.1:* && $W_PIDS =~ ^[0-9,]+$ ]] || die "scripts/worker-dev printed '$line'"
    W_STATE=$state
}

# wrangler dev rebuilds and reloads the Worker when a file in src/ changes: say so if that
# happened after it was ready, as the figures measured meanwhile are then suspect.
check_reloads() { # state-dir what
    local n
    n=$(awk '/Ready on/ {r = 1; next} r && /changed, restarting build|Reloading local server/ {n++} END {print n + 0}' \
        "$1/wrangler.log" 2>/dev/null || echo 0)
    if ((n)); then
        say "warning: wrangler rebuilt the Worker during $2 (src/ changed)"
        echo "WARNING: wrangler rebuilt/reloaded the Worker $n time(s) during $2 (a file in src/ changed): those figures are suspect."
    fi
}

stop_worker() { # state-dir
    local keep=() s
    check_reloads "$1" "$(basename "$1")"
    stop_wrangler "$1"
    for s in "${WRANGLERS[@]}"; do [[ $s == "$1" ]] || keep+=("$s"); done
    WRANGLERS=("${keep[@]}")
    rm -rf "$1"
}

# Starts the native server on a port of our choosing and returns at once, so that the client
# can catch its very first connection; sets SRV_PID, SRV_URL.
start_native_cold() { # name root
    local port
    mkdir -p "$2"
    port=$(free_port)
    RUST_LOG=warn "$OURS_BIN" serve --listen "127.0.0.1:$port" --root "$2" \
        >"$WORK/$1.out" 2>"$WORK/$1.err" &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    SRV_URL=http://127.0.0.1:$port
}

# Which workerd is which: the one listening on the URL's port is wrangler's proxy; the other
# runs the Worker, the local R2 and KV.
workerd_role() { # pid url
    if tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "--socket-addr=entry=127.0.0.1:${2##*:} "; then
        echo "proxy"
    else
        echo "runtime"
    fi
}

csv() { local IFS=,; echo "$*"; }
join_by() { # separator items...
    local sep=$1 out=${2-} x
    shift 2 || shift $#
    for x in "$@"; do out+=$sep$x; done
    echo "$out"
}

# ---- header --------------------------------------------------------------------------------
pkg_version() { sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$REPO_DIR/node_modules/$1/package.json" | head -n1; }
sha_speed=$(openssl speed -evp sha256 -seconds 1 -bytes 1048576 2>/dev/null |
    awk '$1=="sha256" {sub(/k$/,"",$2); printf "%.0f", $2*1000/1e6}')
echo "# edge-registry benchmark: the Worker (wrangler dev --local) next to the native server"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); RAM: $(free -g | awk '/^Mem:/{print $2}') GiB"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- edge-registry $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo '+dirty'); native: release build, RUST_LOG=warn, store in /dev/shm"
echo "- worker: wrangler $(pkg_version wrangler), workerd $(pkg_version workerd), miniflare $(pkg_version miniflare); wasm built by scripts/build-worker (wrangler's custom build); local R2 + KV persisted in /dev/shm"
echo "- node $(node --version); single-core sha256 (openssl speed, 1 MiB blocks): ${sha_speed} MB/s"
echo "- MB = 10^6 bytes; each figure is the median of $RUNS runs; CPU = utime + stime from /proc/PID/stat (all the server's processes: both workerd of wrangler dev, or the native server)"
echo

# ---- blobs ---------------------------------------------------------------------------------
say "generating blobs in $WORK"
BLOB=$WORK/blob-upload BIG=$WORK/blob-big
head -c $((MIB << 20)) /dev/urandom >"$BLOB"
head -c $((BIG_MIB << 20)) /dev/urandom >"$BIG"
BLOB_DIGEST=sha256:$(openssl dgst -sha256 -r "$BLOB" | cut -d' ' -f1)
BIG_DIGEST=sha256:$(openssl dgst -sha256 -r "$BIG" | cut -d' ' -f1) # every store is fresh for it
SIZE=$(mib_label "$MIB") BIG_SIZE=$(mib_label "$BIG_MIB")

# ---- sha256 alone: wasm32 in V8 (Node) vs native -------------------------------------------
say "sha256 alone: building scripts/bench.d/wasm-sha256 for wasm32 and natively"
sha_wasm= sha_native=
crate=$WORK/wasm-sha256
cp -r "$REPO_DIR/scripts/bench.d/wasm-sha256" "$crate"
cp "$REPO_DIR/Cargo.lock" "$crate/"  # the same sha2 version as the Worker's
if (cd "$crate" && CARGO_TARGET_DIR=$crate/target cargo build --release --quiet --offline \
    --lib --target wasm32-unknown-unknown && CARGO_TARGET_DIR=$crate/target cargo build \
    --release --quiet --offline --bin speed) >"$WORK/wasm-sha256.log" 2>&1; then
    wasm=$crate/target/wasm32-unknown-unknown/release/wasm_sha256.wasm
    # As the Worker's wasm, through wasm-opt (worker-build runs it with -O).
    if [[ -x $REPO_DIR/node_modules/.bin/wasm-opt ]]; then
        "$REPO_DIR/node_modules/.bin/wasm-opt" -O "$wasm" -o "$wasm.opt" 2>>"$WORK/wasm-sha256.log" &&
            mv "$wasm.opt" "$wasm"
    fi
    sha_wasm=$(node "$crate/speed.mjs" "$wasm" 512) || sha_wasm=
    sha_native=$("$crate/target/release/speed" 1024) || sha_native=
else
    say "warning: could not build the sha256 crate (offline): $(tail -n 5 "$WORK/wasm-sha256.log")"
fi
if [[ -n $sha_wasm && -n $sha_native ]]; then
    wclient record --results "$RESULTS" --unit MB/s --better higher \
        --label "sha256 alone, sha2 $(awk '$0=="name = \"sha2\"" {getline; gsub(/version = |"/,""); print; exit}' "$REPO_DIR/Cargo.lock"): wasm32 in Node $(node --version)'s V8 / native" \
        "worker=$sha_wasm" "native=$sha_native"
fi

# ---- a fresh start per run: cold start, then CPU and peak RSS of a 1 GiB chunked push --------
say "fresh starts: first request, then a $BIG_SIZE push in $CHUNK_MIB MiB PATCHes ($RUNS runs each)"
w_first=() w_warm=() w_cpu=() w_rss=() w_ready=() n_first=() n_warm=() n_cpu=() n_rss=()
wasm_line=
for i in $(seq 1 "$RUNS"); do
    say "run $i/$RUNS: wrangler dev (builds the wasm first, twice: ~25 s)"
    start_worker "fresh-$i" no-probe
    w_ready+=("$W_READY_S")
    out=$(wclient coldstart --url "$W_URL" --count "$COLD_COUNT")
    read -r first warm <<<"$out"
    w_first+=("$first") w_warm+=("$warm")
    out=$(wclient push-once --url "$W_URL" --repo bench/big --file "$BIG" --digest "$BIG_DIGEST" \
        --mode chunked --chunk "$CHUNK" --pids "$W_PIDS")
    read -r secs cpu hwm detail <<<"$out"
    w_cpu+=("$(awk -v c="$cpu" -v m="$BIG_MIB" 'BEGIN {printf "%.3f", c * 1024 / m}')") w_rss+=("$hwm")
    roles=()
    for d in ${detail//,/ }; do
        IFS=: read -r pid c h <<<"$d"
        roles+=("$(workerd_role "$pid" "$W_URL") (pid $pid): ${c} CPU s, peak ${h} MiB")
    done
    say "worker: ready after ${W_READY_S} s; first GET /v2/ ${first} ms, then median ${warm} ms; push ${secs} s; $(join_by '; ' "${roles[@]}")"
    echo "Worker run $i: the $BIG_SIZE push took ${secs} s ($(awk -v s="$secs" -v m="$BIG_MIB" 'BEGIN {printf "%.0f", m * 1048576 / s / 1e6}') MB/s); per workerd process: $(join_by '; ' "${roles[@]}")"
    [[ -n $wasm_line ]] || wasm_line=$(grep -m1 -o 'wasm size: .*' "$W_STATE/wrangler.log" || true)
    stop_worker "$W_STATE"

    start_native_cold "native-fresh-$i" "$WORK/native-fresh"
    out=$(wclient coldstart --url "$SRV_URL" --count "$COLD_COUNT")
    read -r first warm <<<"$out"
    n_first+=("$first") n_warm+=("$warm")
    out=$(wclient push-once --url "$SRV_URL" --repo bench/big --file "$BIG" --digest "$BIG_DIGEST" \
        --mode chunked --chunk "$CHUNK" --pids "$SRV_PID")
    read -r secs cpu hwm detail <<<"$out"
    n_cpu+=("$(awk -v c="$cpu" -v m="$BIG_MIB" 'BEGIN {printf "%.3f", c * 1024 / m}')") n_rss+=("$hwm")
    say "native: first GET /v2/ ${first} ms, then median ${warm} ms; push ${secs} s, ${cpu} CPU s, peak ${hwm} MiB"
    stop_server "$SRV_PID"
    rm -rf "$WORK/native-fresh"
done
echo "wrangler dev, start to ready (two custom builds of the wasm, then workerd): $(csv "${w_ready[@]}") s"
echo
wclient record --results "$RESULTS" --unit ms --better lower \
    --label "first request after start (GET /v2/, fresh process)" \
    "worker=$(csv "${w_first[@]}")" "native=$(csv "${n_first[@]}")"
wclient record --results "$RESULTS" --unit ms --better lower \
    --label "GET /v2/ after that, median of the next $COLD_COUNT (new connection each)" \
    "worker=$(csv "${w_warm[@]}")" "native=$(csv "${n_warm[@]}")"
wclient record --results "$RESULTS" --unit s/GiB --better lower \
    --label "CPU time per GiB, $BIG_SIZE chunked push ($CHUNK_MIB MiB PATCHes)" \
    "worker=$(csv "${w_cpu[@]}")" "native=$(csv "${n_cpu[@]}")"
wclient record --results "$RESULTS" --unit MiB --better lower \
    --label "peak RSS (VmHWM; worker: sum of both workerd) during a $BIG_SIZE chunked push, fresh process" \
    "worker=$(csv "${w_rss[@]}")" "native=$(csv "${n_rss[@]}")"

# ---- throughput: both servers up, alternating run by run -----------------------------------
say "throughput: wrangler dev and the native server side by side"
start_worker throughput
WURL=$W_URL WPIDS=$W_PIDS WSTATE=$W_STATE
start_ours native "$WORK/native-ram"
NPID=$SRV_PID NURL=$SRV_URL
say "worker $WURL (workerd $WPIDS), native $NURL (pid $NPID)"
BOTH=(--ours "$WURL" --ours-pids "$WPIDS" --ref "$NURL" --ref-pids "$NPID" --ref-root "$WORK/native-ram"
    --results "$RESULTS" --runs "$RUNS" --fresh)
wclient upload "${BOTH[@]}" --label "upload $SIZE, one POST ?digest= (worker: into R2 with its checksum, no wasm)" \
    --repo bench/post --file "$BLOB" --digest "$BLOB_DIGEST" --mode post
wclient upload "${BOTH[@]}" --label "upload $SIZE, POST + PUT with the whole body (worker: one last chunk, through wasm)" \
    --repo bench/postput --file "$BLOB" --digest "$BLOB_DIGEST" --mode postput
wclient upload "${BOTH[@]}" --label "upload $SIZE, chunked ($CHUNK_MIB MiB PATCHes; worker: hashed in wasm)" \
    --repo bench/chunked --file "$BLOB" --digest "$BLOB_DIGEST" --mode chunked --chunk "$CHUNK"
BLOB_DIGEST=sha256:$(openssl dgst -sha256 -r "$BLOB" | cut -d' ' -f1) # --fresh changed it
wclient download --ours "$WURL" --ref "$NURL" --results "$RESULTS" --runs "$RUNS" \
    --label "download $SIZE" --repo bench/pull --file "$BLOB" --digest "$BLOB_DIGEST"
stop_worker "$WSTATE"
stop_server "$NPID"

# ---- wasm size -----------------------------------------------------------------------------
if [[ $wasm_line =~ ([0-9]+)\ bytes,\ ([0-9]+)\ bytes\ gzipped ]]; then
    echo "${wasm_line} (scripts/build-worker)"
    wclient record --results "$RESULTS" --unit bytes --better lower \
        --label "wasm size, gzip -9 (raw: ${BASH_REMATCH[1]} bytes)" "worker=${BASH_REMATCH[2]}"
else
    say "warning: no wasm size line in wrangler's log"
fi

# Where the chunked upload's CPU goes: the share that hashing alone would take.
if [[ -n $sha_wasm ]]; then
    python3 - "$RESULTS" "$sha_wasm" "$sha_native" <<'EOF'
import json, sys
rows = {r["label"]: r for r in map(json.loads, open(sys.argv[1]))}
wasm, native = float(sys.argv[2]), float(sys.argv[3])
big = next((r for l, r in rows.items() if l.startswith("CPU time per GiB,")), None)
mono = next((r for l, r in rows.items() if l.startswith("CPU time per GiB: upload") and "POST ?digest=" in l), None)
if big and big.get("worker"):
    h = 2**30 / (wasm * 1e6)
    hn = 2**30 / (native * 1e6)
    line = (f"hashing alone would take {h:.2f} CPU s/GiB in wasm ({100 * h / big['worker']:.0f}% of the "
            f"Worker's {big['worker']:.2f} s/GiB chunked) and {hn:.2f} s/GiB natively "
            f"({100 * hn / big['native']:.0f}% of the native server's {big['native']:.2f} s/GiB)")
    if mono and mono.get("worker"):
        line += (f"; the Worker's monolithic upload, where no byte passes through wasm, costs "
                 f"{mono['worker']:.2f} s/GiB")
    print(line)
EOF
fi

# ---- table ---------------------------------------------------------------------------------
echo
echo "Results ($(date -u '+%Y-%m-%d'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average at end $(cut -d' ' -f1-3 /proc/loadavg)); the Worker under wrangler dev --local (workerd, local R2 + KV), both stores in /dev/shm:"
echo
wclient report --results "$RESULTS"
say "done"
