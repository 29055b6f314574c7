# Notifications and metrics on vs off (issue 15). Sourced by `scripts/bench --ops` (which has
# built the native server, made $WORK in /dev/shm and set the cleanup trap).
#
# Two of our servers, stores in /dev/shm, RUST_LOG=warn: "off" as it is, "on" with
# `--notify` to a local receiver (nginx answering 200 to every POST, else Python's http.server) and
# `--metrics-listen`. Figures, each the median of BENCH_RUNS runs, the servers alternating:
# manifest GET by tag (wrk -t2 -c16; every GET is a pull event, so a notification), and 16 MiB
# monolithic uploads. The goal: "on" within 5% of "off".

echo "# edge-registry: notifications and metrics on vs off"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- nproc: $(nproc); ours: edge-registry $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo '+dirty') (release build, RUST_LOG=warn, stores in /dev/shm)"
echo "- on: --notify (a local receiver) and --metrics-listen; each figure is the median of $RUNS runs"
echo

RECV_PORT=$(free_port)
# The receiver answers 200 to every POST. nginx (in C, one worker) where it is installed, so that
# what the receiver costs on this machine's cores is small next to what the registry does; else
# Python's http.server, which costs far more per POST (and so counts against "on").
if command -v nginx >/dev/null; then
    RECEIVER=nginx
    mkdir -p "$WORK/nginx-body"
    cat >"$WORK/nginx.conf" <<EOF
daemon off;
pid $WORK/nginx.pid;
worker_processes 1;
error_log $WORK/nginx-error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-body;
  client_body_buffer_size 1m;
  client_max_body_size 0;
  server {
    listen 127.0.0.1:$RECV_PORT;
    location / { return 200; }
  }
}
EOF
    nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" &
    PIDS+=("$!")
else
    RECEIVER="Python's http.server"
    python3 - "$RECV_PORT" >"$WORK/receiver.log" 2>&1 <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
    PIDS+=("$!")
fi
for _ in $(seq 1 50); do
    curl -sf -X POST -d '{}' "http://127.0.0.1:$RECV_PORT/events" >/dev/null && break
    sleep 0.1
done
echo "- the receiver: $RECEIVER"
echo

start_ours off "$WORK/ops-off"
OFF_URL=$SRV_URL
OFF_PID=$SRV_PID
OURS_ARGS=(--notify "http://127.0.0.1:$RECV_PORT/events" --metrics-listen 127.0.0.1:0)
start_ours on "$WORK/ops-on"
ON_URL=$SRV_URL
ON_PID=$SRV_PID
METRICS_URL=$(sed -n 's/^metrics on //p' "$WORK/on.out")
OURS_ARGS=()

ops() {
    client --names off,on "$@" --ours "$OFF_URL" --ours-pids "$OFF_PID" --ref "$ON_URL" --ref-pids "$ON_PID" \
        --results "$RESULTS" --runs "$RUNS"
}

say "16 MiB uploads (first: no backlog of pull events to deliver yet)"
BLOB=$WORK/blob-16M
head -c $((16 << 20)) /dev/urandom >"$BLOB"
BLOB_DIGEST=sha256:$(openssl dgst -sha256 -r "$BLOB" | cut -d' ' -f1)
ops upload --repo bench/up --file "$BLOB" --digest "$BLOB_DIGEST" --mode post \
    --ours-root "$WORK/ops-off" --ref-root "$WORK/ops-on" --label "upload 16 MiB (POST ?digest=)"

say "manifest GETs with wrk -t2 -c16 ($WRK_DURATION each)"
client setup --url "$OFF_URL" --repo bench/wrk --tag latest >/dev/null
client setup --url "$ON_URL" --repo bench/wrk --tag latest >/dev/null
ops wrk --duration "$WRK_DURATION" --header "Accept: application/vnd.oci.image.manifest.v1+json" \
    --label "manifest GET by tag (wrk -t2 -c16)" --ours-path /v2/bench/wrk/manifests/latest

client --names off,on report --results "$RESULTS"
echo
delivered=$(curl -sf "$METRICS_URL" | awk '/^edge_registry_notification_deliveries_total/ {s+=$2} END {print s+0}')
dropped=$(curl -sf "$METRICS_URL" | awk '/^edge_registry_notification_drops_total/ {s+=$2} END {print s+0}')
echo "- notifications delivered by \"on\": $delivered events; dropped: $dropped"
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
