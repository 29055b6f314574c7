#!/usr/bin/env python3
"""Benchmark client for scripts/bench (Python 3 stdlib only).

A minimal HTTP/1.1 client on a raw socket: request bodies go out with socket.sendfile()
straight from the blob file in /dev/shm (zero-copy), response bodies are drained into one
reusable buffer, so the client costs little next to the servers it measures.

Every figure alternates the servers run by run (ours, reference, ours, ...), so slow drift in
the machine's background load hits both alike. Each figure is appended to a results file (JSON
lines) and printed as one line; `report` prints the markdown table at the end.

The two columns are "ours" (--ours) and "reference" (--ref) unless `--names A,B` (before the
subcommand) names them otherwise: `scripts/bench --worker` compares the Worker with our native
server as `--names worker,native`.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse

DRAIN = bytearray(4 << 20)
# The two columns: the server given as --ours, the one given as --ref (see `--names`).
NAMES = ("ours", "reference")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class HttpError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"refusing a non-loopback target: {base}")
        self.sock = socket.create_connection((self.host, self.port), timeout=300)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _head(self, method, target, headers, length):
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for k, v in headers.items():
            lines.append(f"{k}: {v}")
        if length is not None:
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def request(self, method, target, headers=None, body=None, file=None, offset=0, count=None):
        """Sends a request; `body` is bytes, or `file` (an open file) from `offset` for `count`
        bytes goes out with sendfile. Returns (status, headers, body_bytes_or_len)."""
        headers = dict(headers or {})
        length = None
        if body is not None:
            length = len(body)
        elif file is not None:
            length = count
        elif method in ("POST", "PUT", "PATCH"):
            length = 0
        self.sock.sendall(self._head(method, target, headers, length))
        try:
            if body is not None and body:
                self.sock.sendall(body)
            elif file is not None and count:
                sent = self.sock.sendfile(file, offset, count)
                if sent != count:
                    raise HttpError(f"sendfile sent {sent} of {count} bytes")
        except (BrokenPipeError, ConnectionResetError):
            # The server answered (and closed) before reading the whole body; read its answer.
            pass
        return self.response(method, sink=(method == "GET"))

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise HttpError("connection closed by the server")
        self.buf += data

    def response(self, method, sink=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return status, hdrs, b""
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            return status, hdrs, self._chunked()
        n = int(hdrs.get("content-length", "0"))
        if sink and n > len(self.buf):
            # Drain a large body without keeping it: count bytes into one reusable buffer.
            got = len(self.buf)
            self.buf = b""
            view = memoryview(DRAIN)
            while got < n:
                r = self.sock.recv_into(view, min(len(DRAIN), n - got))
                if r == 0:
                    raise HttpError("connection closed mid-body")
                got += r
            return status, hdrs, got
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def _chunked(self):
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                self._fill()
            out += self.buf[:size]
            self.buf = self.buf[size + 2 :]
            if size == 0:
                return out


def target_of(location):
    """A Location header (absolute, as the reference sends, or path-absolute) → request target."""
    u = urllib.parse.urlsplit(location)
    return u.path + ("?" + u.query if u.query else "")


def with_digest(target, digest):
    return target + ("&" if "?" in target else "?") + "digest=" + digest


def expect(status, want, what, hdrs=None, body=b""):
    if status != want:
        detail = body[:300] if isinstance(body, bytes) else body
        raise HttpError(f"{what}: HTTP {status}, expected {want}: {detail!r}")


# ---- process figures (Linux /proc) -----------------------------------------------------------


def pid_list(text):
    """Comma-separated PIDs; `+PID` stands for that process and all its descendants at the
    time of each sample (PostgreSQL's backends come and go with connections)."""
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def with_descendants(root):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids):
    """utime + stime of the processes (all their threads), in seconds. A process that is gone
    counts 0, so take the difference over a span in which the processes live (a process born
    in the span counts all its time, which is all in the span)."""
    total = 0.0
    expanded = []
    for p in pids:
        p = str(p)
        expanded.extend(with_descendants(int(p[1:])) if p.startswith("+") else [int(p)])
    for pid in expanded:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is field 3 (state): utime and stime are fields 14 and 15.
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def hwm_mib(pid):
    """Peak resident memory (VmHWM) of a process so far, in MiB (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ---- operations ------------------------------------------------------------------------------


def open_session(c, repo):
    s, h, b = c.request("POST", f"/v2/{repo}/blobs/uploads/")
    expect(s, 202, "POST (open upload)", h, b)
    return target_of(h["location"])


def push(base, repo, path, digest, mode, chunk):
    """Uploads `path` as a blob; returns the seconds from the first request to the last answer.

    modes: post (one POST ?digest= with the body), postput (POST opens, PUT ?digest= carries
    the whole body), chunked (POST opens, PATCHes of `chunk` bytes with Content-Range, empty
    PUT ?digest= closes)."""
    size = os.path.getsize(path)
    c = Conn(base)
    try:
        with open(path, "rb") as f:
            t0 = time.perf_counter()
            if mode == "post":
                s, h, b = c.request(
                    "POST",
                    f"/v2/{repo}/blobs/uploads/?digest={digest}",
                    {"Content-Type": "application/octet-stream"},
                    file=f,
                    count=size,
                )
                expect(s, 201, "POST ?digest= (monolithic)", h, b)
            elif mode == "postput":
                loc = open_session(c, repo)
                s, h, b = c.request(
                    "PUT",
                    with_digest(loc, digest),
                    {"Content-Type": "application/octet-stream"},
                    file=f,
                    count=size,
                )
                expect(s, 201, "PUT ?digest= (monolithic)", h, b)
            elif mode == "chunked":
                loc = open_session(c, repo)
                off = 0
                while off < size:
                    n = min(chunk, size - off)
                    s, h, b = c.request(
                        "PATCH",
                        loc,
                        {
                            "Content-Type": "application/octet-stream",
                            "Content-Range": f"{off}-{off + n - 1}",
                        },
                        file=f,
                        offset=off,
                        count=n,
                    )
                    expect(s, 202, f"PATCH {off}-{off + n - 1}", h, b)
                    loc = target_of(h["location"])
                    off += n
                s, h, b = c.request("PUT", with_digest(loc, digest))
                expect(s, 201, "PUT ?digest= (close chunked)", h, b)
            else:
                raise SystemExit(f"unknown mode {mode}")
            dt = time.perf_counter() - t0
        if h.get("docker-content-digest", digest) != digest:
            raise HttpError(f"server reports digest {h.get('docker-content-digest')}")
        return dt
    finally:
        c.close()


def pull(base, repo, digest, size):
    c = Conn(base)
    try:
        t0 = time.perf_counter()
        s, h, got = c.request("GET", f"/v2/{repo}/blobs/{digest}")
        dt = time.perf_counter() - t0
        expect(s, 200, "GET blob", h, got)
        if got != size:
            raise HttpError(f"GET blob: {got} bytes, expected {size}")
        return dt
    finally:
        c.close()


def forget(root, hexdigest):
    """Removes a blob (and its repository links) from a store's folder, so the next upload of
    the same content is a first upload again (no deduplication shortcut) and RAM stays bounded.
    Works for both layouts: ours (blobs/sha256/xx/<hex>, meta/.../_layers/sha256/<hex>) and the
    reference's (blobs/sha256/xx/<hex>/data, repositories/.../_layers/sha256/<hex>/link)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for d in list(dirnames):
            if d == hexdigest:
                shutil.rmtree(os.path.join(dirpath, d), ignore_errors=True)
                dirnames.remove(d)
        for fn in filenames:
            if fn == hexdigest:
                os.remove(os.path.join(dirpath, fn))


def sha256_of(data):
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def refresh(path):
    """Makes `path` new content (random first 32 bytes, in place) and returns its sha256 digest,
    for servers whose store cannot be emptied from outside (the Worker's local R2): every run
    then uploads a blob the server has never seen."""
    import hashlib

    with open(path, "r+b") as f:
        f.write(os.urandom(32))
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(16 << 20)
            if not block:
                break
            h.update(block)
    return "sha256:" + h.hexdigest()


def put_blob_bytes(c, repo, data):
    digest = sha256_of(data)
    loc = open_session(c, repo)
    s, h, b = c.request(
        "PUT", with_digest(loc, digest), {"Content-Type": "application/octet-stream"}, body=data
    )
    expect(s, 201, "PUT small blob", h, b)
    return digest, len(data)


# ---- results ---------------------------------------------------------------------------------


def fmt(v):
    if v is None:
        return "n/a"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def record(results, label, unit, better, runs):
    """Appends one figure (median of each server's runs) to the results file and prints its line."""
    unknown = set(runs) - set(NAMES)
    if unknown:
        raise SystemExit(f"record: unknown column(s) {sorted(unknown)}; columns are {NAMES}")
    med = {n: (statistics.median(runs[n]) if runs.get(n) else None) for n in NAMES}
    r = ratio(med[NAMES[0]], med[NAMES[1]])
    row = {"label": label, "unit": unit, "better": better, "runs": runs}
    row.update(med)
    with open(results, "a") as f:
        f.write(json.dumps(row) + "\n")
    runs_txt = "; ".join(
        f"{n}: " + " ".join(fmt(x) for x in runs.get(n) or []) for n in NAMES if runs.get(n)
    )
    a, b = NAMES
    print(
        f"{label} [{unit}, {better} is better]: {a} {fmt(med[a])}, "
        f"{b} {fmt(med[b])}, ratio {a}/{b} "
        f"{fmt(r) if r is not None else 'n/a'}   (runs {runs_txt})",
        flush=True,
    )


def targets(args):
    out = []
    for n, url, root, pids in (
        (NAMES[0], args.ours, args.ours_root, getattr(args, "ours_pids", None)),
        (NAMES[1], args.ref, args.ref_root, getattr(args, "ref_pids", None)),
    ):
        if url:
            out.append((n, url, root, pid_list(pids)))
    return out


# ---- commands --------------------------------------------------------------------------------


def cmd_upload(args):
    """Uploads the file `--runs` times to each server. With --fresh, each upload is of new
    content (see `refresh`). With --ours-pids / --ref-pids, also records the CPU seconds those
    processes spent per GiB uploaded."""
    size = os.path.getsize(args.file)
    runs, cpu, ecpu = {}, {}, {}
    skip = set(args.skip or [])
    for _ in range(args.runs):
        for name, url, root, pids in targets(args):
            if name in skip:
                continue
            digest = refresh(args.file) if args.fresh else args.digest
            engines = engine_pids(args, name)
            before, before_e = cpu_seconds(pids), cpu_seconds(engines)
            dt = push(url, args.repo, args.file, digest, args.mode, args.chunk)
            if pids:
                cpu.setdefault(name, []).append((cpu_seconds(pids) - before) / (size / 2**30))
            if engines:
                ecpu.setdefault(name, []).append(
                    (cpu_seconds(engines) - before_e) / (size / 2**30))
            if root:
                forget(root, digest.split(":", 1)[1])
            runs.setdefault(name, []).append(size / dt / 1e6 if args.metric == "mbps" else dt)
    unit, better = ("MB/s", "higher") if args.metric == "mbps" else ("s", "lower")
    record(args.results, args.label, unit, better, runs)
    if cpu:
        record(args.results, f"CPU time per GiB: {args.label}", "s/GiB", "lower", cpu)
    if ecpu:
        record(args.results, f"CPU time per GiB of the engines: {args.label}", "s/GiB", "lower",
               ecpu)


def engine_pids(args, name):
    """The PIDs of the engines a column's server runs on (--ours-engine-pids), if any."""
    return pid_list(getattr(args, "ours_engine_pids", None)) if name == NAMES[0] else []


def busy_seconds():
    """CPU seconds all processes have spent busy so far (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def cmd_steady(args):
    """Monolithic (POST + PUT ?digest= with the whole body) against chunked (PATCHes of
    --chunk bytes, then an empty PUT) uploads of one file, on one or more servers (--target
    NAME=URL=ROOT[=PID], repeatable; with PID, also the server's CPU seconds per GiB), interleaved: each run uploads with every mode to every server
    in turn, so background load drifts over all alike. Prints each upload's MB/s as it goes,
    then per server and mode all runs, the median, the min, min/median; and chunked/monolithic
    of the medians (--check: of the first server; any others are for comparison). With a PID, each run also shows how busy other processes kept the cores
    meanwhile (all CPU time from /proc/stat less the server's and this client's; about 5-10%
    even on a quiet machine: kernel threads, softirq), so runs slowed by others stand out. With --check, exits 1 unless every server's chunked median is at least
    --want-ratio of its monolithic median and no run of either falls below --floor of its
    mode's median."""
    size = os.path.getsize(args.file)
    servers = []
    for t in args.target:
        name, url, root, *pid = t.split("=", 3)
        servers.append((name, url, root, pid_list(pid[0] if pid else "")))
    modes = (("monolithic", "postput"), (f"chunked {args.chunk >> 20} MiB", "chunked"))
    runs = {(n, m): [] for n, *_ in servers for m, _ in modes}
    cpu = {(n, m): [] for n, *_ in servers for m, _ in modes}
    busy = {(n, m): [] for n, *_ in servers for m, _ in modes}
    for i in range(args.runs):
        for name, url, root, pids in servers:
            for label, mode in modes:
                before, all_before, own_before = cpu_seconds(pids), busy_seconds(), os.times()
                dt = push(url, args.repo, args.file, args.digest, mode, args.chunk)
                server = cpu_seconds(pids) - before
                own = sum(os.times()[:2]) - sum(own_before[:2])
                cpu[(name, label)].append(server / (size / 2**30))
                forget(root, args.digest.split(":", 1)[1])
                mbps = size / dt / 1e6
                runs[(name, label)].append(mbps)
                # The CPU other processes took meanwhile (a share of all cores), when the
                # server's processes are known: a run that was slowed by others shows it.
                others = ""
                if pids and all_before is not None:
                    taken = busy_seconds() - all_before - server - own
                    share = max(0.0, taken) / dt / (os.cpu_count() or 1)
                    busy[(name, label)].append(share)
                    others = f" (others busy {share:.0%})"
                print(
                    f"run {i + 1}: {name} {label}: {mbps:.0f} MB/s{others}",
                    file=sys.stderr,
                    flush=True,
                )
    ok = True
    for i, (name, _u, _r, pids) in enumerate(servers):
        # Only the first server is checked; the others are there to compare with.
        checked = i == 0
        med = {}
        for label, _ in modes:
            xs = runs[(name, label)]
            med[label] = statistics.median(xs)
            lo = min(xs)
            steady = lo >= args.floor * med[label]
            ok &= steady or not checked
            cpu_txt = ""
            if pids:
                cpu_txt = f"; server CPU {statistics.median(cpu[(name, label)]):.2f} s/GiB (median)"
            if busy[(name, label)]:
                shares = " ".join(f"{x:.0%}" for x in busy[(name, label)])
                cpu_txt += f"; others busy per run {shares}"
            print(
                f"{name} {label} (MB/s): runs {' '.join(f'{x:.0f}' for x in xs)}; "
                f"median {med[label]:.0f}, min {lo:.0f}, min/median {lo / med[label]:.2f}"
                f"{'' if steady else f' (below {args.floor:.2f})'}{cpu_txt}",
                flush=True,
            )
        (mono, _), (chunked, _) = modes
        r = med[chunked] / med[mono]
        ok &= r >= args.want_ratio or not checked
        print(
            f"{name} {chunked} / {mono} (medians): {r:.2f}"
            f"{'' if r >= args.want_ratio else f' (below {args.want_ratio:.2f})'}",
            flush=True,
        )
    if args.check and not ok:
        sys.exit(1)


def cmd_download(args):
    size = os.path.getsize(args.file)
    runs = {}
    for name, url, _root, _pids in targets(args):
        # Store the blob once (kept: the downloads read it).
        push(url, args.repo, args.file, args.digest, "postput", 0)
    cpu, ecpu = {}, {}
    for _ in range(args.runs):
        for name, url, _root, pids in targets(args):
            engines = engine_pids(args, name)
            before, before_e = cpu_seconds(pids), cpu_seconds(engines)
            dt = pull(url, args.repo, args.digest, size)
            runs.setdefault(name, []).append(size / dt / 1e6)
            if pids:
                cpu.setdefault(name, []).append((cpu_seconds(pids) - before) / (size / 2**30))
            if engines:
                ecpu.setdefault(name, []).append(
                    (cpu_seconds(engines) - before_e) / (size / 2**30))
    record(args.results, args.label, "MB/s", "higher", runs)
    if cpu:
        record(args.results, f"CPU time per GiB: {args.label}", "s/GiB", "lower", cpu)
    if ecpu:
        record(args.results, f"CPU time per GiB of the engines: {args.label}", "s/GiB", "lower",
               ecpu)


def cmd_push_once(args):
    """One upload (for the peak-RSS figure); prints the seconds it took. With --pids (the
    server's processes, comma-separated) it prints `SECONDS CPU_SECONDS PEAK_RSS_MIB DETAIL`:
    the CPU seconds the processes spent during the upload, the sum of their peak RSS (VmHWM)
    after it, and DETAIL, pid:cpu:peak for each process."""
    pids = pid_list(args.pids)
    before = {p: cpu_seconds([p]) for p in pids}
    dt = push(args.url, args.repo, args.file, args.digest, args.mode, args.chunk)
    if not pids:
        print(f"{dt:.3f}")
        return
    detail, cpu, hwm = [], 0.0, 0.0
    for p in pids:
        c = cpu_seconds([p]) - before[p]
        h = hwm_mib(p)
        if h is None:
            raise HttpError(f"process {p} is gone: no peak RSS")
        cpu += c
        hwm += h
        detail.append(f"{p}:{c:.2f}:{h:.1f}")
    print(f"{dt:.3f} {cpu:.3f} {hwm:.1f} {','.join(detail)}")


def cmd_coldstart(args):
    """The first request to a server that is just starting, and the ones after it: waits
    (bounded by --wait seconds) until the port accepts a connection, sends GET /v2/ on it at
    once, then `--count` more GET /v2/, each on a new connection as the first was. A latency is
    from the connection being open to the whole response read. Prints `FIRST_MS MEDIAN_MS`
    (the median of the later requests)."""
    u = urllib.parse.urlsplit(args.url)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            c = Conn(args.url)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise HttpError(f"{u.netloc} did not accept a connection in {args.wait} s")
            time.sleep(0.002)

    def timed(c):
        try:
            t0 = time.perf_counter()
            s, h, b = c.request("GET", "/v2/")
            dt = (time.perf_counter() - t0) * 1e3
        finally:
            c.close()
        expect(s, 200, "GET /v2/", h, b)
        return dt

    first = timed(c)
    later = [timed(Conn(args.url)) for _ in range(args.count)]
    print(f"{first:.2f} {statistics.median(later):.2f}")


def cmd_probe_post(args):
    """Does the server take a whole blob in one POST ?digest=? Prints yes or no."""
    data = os.urandom(64 << 10)
    digest = sha256_of(data)
    c = Conn(args.url)
    try:
        s, h, b = c.request(
            "POST",
            f"/v2/{args.repo}/blobs/uploads/?digest={digest}",
            {"Content-Type": "application/octet-stream"},
            body=data,
        )
    except (HttpError, OSError) as e:
        print(f"no ({e})")
        return
    finally:
        c.close()
    print("yes" if s == 201 else f"no (HTTP {s}, {'opens a session' if s == 202 else 'refused'})")


def cmd_setup(args):
    """Pushes a small OCI image (config, one 4 KiB layer, manifest) under `tag`; prints the
    manifest digest and the layer digest."""
    c = Conn(args.url)
    try:
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
            }
        ).encode()
        cfg_digest, cfg_size = put_blob_bytes(c, args.repo, config)
        layer = bytes(range(256)) * 16
        layer_digest, layer_size = put_blob_bytes(c, args.repo, layer)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": cfg_digest,
                    "size": cfg_size,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest,
                        "size": layer_size,
                    }
                ],
            }
        ).encode()
        ct = "application/vnd.oci.image.manifest.v1+json"
        s, h, b = c.request(
            "PUT", f"/v2/{args.repo}/manifests/{args.tag}", {"Content-Type": ct}, body=manifest
        )
        expect(s, 201, "PUT manifest", h, b)
        mdigest = sha256_of(manifest)
        # Check what wrk will ask for, once, before it asks 100,000 times.
        for ref in (args.tag, mdigest):
            s, h, b = c.request("GET", f"/v2/{args.repo}/manifests/{ref}", {"Accept": ct})
            expect(s, 200, f"GET manifest {ref}", h, b)
        s, h, b = c.request("HEAD", f"/v2/{args.repo}/blobs/{layer_digest}")
        expect(s, 200, "HEAD blob", h, b)
        print(mdigest, layer_digest)
    finally:
        c.close()


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def run_wrk(url, path, args):
    cmd = ["wrk", "-t2", "-c16", f"-d{args.duration}", "--latency", "--timeout", "5s"]
    for h in args.header or []:
        cmd += ["-H", h]
    cmd.append(url.rstrip("/") + path)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    args.last_requests = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if bad or (errs and any(int(x) for x in errs.groups())) or rps == 0:
        raise HttpError(f"wrk saw failures on {url}{path}:\n{out}")
    return rps, p50, p99


def run_ab_head(url, path, args, csv):
    """HEAD load with ApacheBench: wrk 4.1 cannot do HEAD (its parser then waits for the
    Content-Length body that a HEAD response never has). 16 keep-alive connections, one
    client thread; percentiles from ab's CSV, which has them in fractional ms."""
    secs = max(1, int(float(re.fullmatch(r"([0-9.]+)s?", args.duration).group(1))))
    # -n after -t: ab stops at whichever limit comes first; 400k req/s is far above either server.
    cmd = ["ab", "-q", "-i", "-k", "-c16", "-t", str(secs), "-n", str(secs * 400000), "-e", csv]
    for h in args.header or []:
        cmd += ["-H", h]
    cmd.append(url.rstrip("/") + path)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    rps = float(re.search(r"Requests per second:\s+([0-9.]+)", out).group(1))
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    if failed or "Non-2xx responses" in out or rps == 0:
        raise HttpError(f"ab saw failures on {url}{path}:\n{out}")
    pct = {}
    for line in open(csv).read().splitlines()[1:]:
        k, _, v = line.partition(",")
        pct[int(k)] = float(v)
    return rps, pct[50], pct[99]


def cmd_wrk(args):
    paths = {NAMES[0]: args.ours_path, NAMES[1]: args.ref_path or args.ours_path}
    runs = {n: {"rps": [], "p50": [], "p99": []} for n in NAMES}
    cpu, ecpu = {}, {}
    for _ in range(args.runs):
        for name, url, _root, pids in targets(args):
            engines = engine_pids(args, name)
            before, before_e = cpu_seconds(pids), cpu_seconds(engines)
            if args.head:
                rps, p50, p99 = run_ab_head(url, paths[name], args, args.results + ".ab.csv")
            else:
                rps, p50, p99 = run_wrk(url, paths[name], args)
                # CPU microseconds per request (wrk only: it says how many it sent).
                if pids:
                    cpu.setdefault(name, []).append(
                        (cpu_seconds(pids) - before) * 1e6 / args.last_requests)
                if engines:
                    ecpu.setdefault(name, []).append(
                        (cpu_seconds(engines) - before_e) * 1e6 / args.last_requests)
            runs[name]["rps"].append(rps)
            runs[name]["p50"].append(p50)
            runs[name]["p99"].append(p99)
    for key, unit, better in (("rps", "req/s", "higher"), ("p50", "ms", "lower"), ("p99", "ms", "lower")):
        label = f"{args.label} {key if key != 'rps' else 'throughput'}"
        record(args.results, label, unit, better, {n: runs[n][key] for n in NAMES if runs[n][key]})
    if cpu:
        record(args.results, f"{args.label} CPU per request", "µs", "lower", cpu)
    if ecpu:
        record(args.results, f"{args.label} CPU per request of the engines", "µs", "lower", ecpu)


def cmd_record(args):
    """Records a figure measured outside this helper (peak RSS): values as name=v1,v2,v3."""
    runs = {}
    for item in args.values:
        n, _, vals = item.partition("=")
        runs[n] = [float(v) for v in vals.split(",") if v]
    record(args.results, args.label, args.unit, args.better, runs)


def cmd_linearity(args):
    """Prints the "upload time" figures as seconds per GiB: flat means linear growth."""
    sizes = {"16 MiB": 16 / 1024, "256 MiB": 256 / 1024, "1 GiB": 1.0}
    parts = {n: [] for n in NAMES}
    for line in open(args.results):
        r = json.loads(line)
        m = re.match(r"upload time (\d+ [MG]iB)", r["label"])
        if not m:
            continue
        for n in NAMES:
            if r[n] is not None:
                parts[n].append(f"{m.group(1)} {r[n] / sizes[m.group(1)]:.2f}")
    print(
        "upload time per GiB (flat = linear): "
        + "; ".join(f"{n}: " + ", ".join(parts[n]) for n in NAMES)
        + " (s/GiB)",
        flush=True,
    )


def cmd_report(args):
    rows = [json.loads(line) for line in open(args.results)]
    a, b = NAMES
    short = {"reference": "ref"}
    print(f"| figure | {a} | {b} | ratio {short.get(a, a)}/{short.get(b, b)} |")
    print("|---|---:|---:|---:|")
    for r in rows:
        rt = ratio(r.get(a), r.get(b))
        print(
            f"| {r['label']} ({r['unit']}, {r['better']} is better) | {fmt(r.get(a))} | "
            f"{fmt(r.get(b))} | {fmt(rt) if rt is not None else 'n/a'} |"
        )


def cpu_args(sp):
    sp.add_argument("--ours-pids", help="processes whose CPU time to count, comma-separated "
                    "(+PID: with its descendants)")
    sp.add_argument("--ref-pids", help="processes whose CPU time to count, comma-separated")
    sp.add_argument("--ours-engine-pids",
                    help="the engines the first column runs on (counted apart), like --ours-pids")


def main():
    global NAMES
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--names", default=",".join(NAMES), help="the two columns' names: A,B")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--ours")
        sp.add_argument("--ref")
        sp.add_argument("--ours-root")
        sp.add_argument("--ref-root")
        sp.add_argument("--results", required=True)
        sp.add_argument("--label", required=True)
        sp.add_argument("--runs", type=int, default=3)

    sp = sub.add_parser("upload")
    common(sp)
    sp.add_argument("--repo", required=True)
    sp.add_argument("--file", required=True)
    sp.add_argument("--digest", required=True)
    sp.add_argument("--mode", choices=["post", "postput", "chunked"], required=True)
    sp.add_argument("--chunk", type=int, default=16 << 20)
    sp.add_argument("--metric", choices=["mbps", "seconds"], default="mbps")
    sp.add_argument("--skip", action="append", help="a column to leave out")
    sp.add_argument("--fresh", action="store_true", help="new content for every upload")
    cpu_args(sp)
    sp.set_defaults(fn=cmd_upload)

    sp = sub.add_parser("steady")
    sp.add_argument("--target", action="append", required=True, help="NAME=URL=ROOT[=PID]")
    sp.add_argument("--repo", required=True)
    sp.add_argument("--file", required=True)
    sp.add_argument("--digest", required=True)
    sp.add_argument("--chunk", type=int, default=16 << 20)
    sp.add_argument("--runs", type=int, default=7)
    sp.add_argument("--want-ratio", type=float, default=0.90)
    sp.add_argument("--floor", type=float, default=0.75)
    sp.add_argument("--check", action="store_true", help="exit 1 when the goal is not met")
    sp.set_defaults(fn=cmd_steady)

    sp = sub.add_parser("download")
    common(sp)
    sp.add_argument("--repo", required=True)
    sp.add_argument("--file", required=True)
    sp.add_argument("--digest", required=True)
    cpu_args(sp)
    sp.set_defaults(fn=cmd_download)

    sp = sub.add_parser("wrk")
    common(sp)
    sp.add_argument("--ours-path", required=True)
    sp.add_argument("--ref-path")
    sp.add_argument("--header", action="append")
    sp.add_argument("--head", action="store_true", help="HEAD requests, with ab (see run_ab_head)")
    sp.add_argument("--duration", default="5s")
    cpu_args(sp)
    sp.set_defaults(fn=cmd_wrk)

    sp = sub.add_parser("record")
    sp.add_argument("--results", required=True)
    sp.add_argument("--label", required=True)
    sp.add_argument("--unit", required=True)
    sp.add_argument("--better", choices=["higher", "lower"], required=True)
    sp.add_argument("values", nargs="+")
    sp.set_defaults(fn=cmd_record)

    sp = sub.add_parser("linearity")
    sp.add_argument("--results", required=True)
    sp.set_defaults(fn=cmd_linearity)

    sp = sub.add_parser("report")
    sp.add_argument("--results", required=True)
    sp.set_defaults(fn=cmd_report)

    sp = sub.add_parser("push-once")
    sp.add_argument("--url", required=True)
    sp.add_argument("--repo", required=True)
    sp.add_argument("--file", required=True)
    sp.add_argument("--digest", required=True)
    sp.add_argument("--mode", choices=["post", "postput", "chunked"], default="postput")
    sp.add_argument("--chunk", type=int, default=16 << 20)
    sp.add_argument("--pids", help="the server's processes: also print CPU time and peak RSS")
    sp.set_defaults(fn=cmd_push_once)

    sp = sub.add_parser("coldstart")
    sp.add_argument("--url", required=True)
    sp.add_argument("--count", type=int, default=20)
    sp.add_argument("--wait", type=float, default=60, help="seconds to wait for the port")
    sp.set_defaults(fn=cmd_coldstart)

    sp = sub.add_parser("probe-post")
    sp.add_argument("--url", required=True)
    sp.add_argument("--repo", required=True)
    sp.set_defaults(fn=cmd_probe_post)

    sp = sub.add_parser("setup")
    sp.add_argument("--url", required=True)
    sp.add_argument("--repo", required=True)
    sp.add_argument("--tag", default="latest")
    sp.set_defaults(fn=cmd_setup)

    args = p.parse_args()
    names = tuple(n.strip() for n in args.names.split(","))
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise SystemExit(f"--names wants two different names, A,B: {args.names!r}")
    NAMES = names
    for n in getattr(args, "skip", None) or []:
        if n not in NAMES:
            raise SystemExit(f"--skip {n}: columns are {NAMES}")
    try:
        args.fn(args)
    except HttpError as e:
        print(f"bench client: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
