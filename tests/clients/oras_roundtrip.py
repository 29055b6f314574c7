#!/usr/bin/env python3
"""Round trip through edge-registry with a real client: oras-py (PyPI `oras`).

Usage: oras_roundtrip.py HOST:PORT [--https]

Pushes artifacts with oras-py over plain HTTP (its `insecure` option), pulls them back and
checks that every pulled file matches what was pushed byte for byte and that every digest
agrees (oras-py's manifest descriptors, the registry's Docker-Content-Digest headers and the
sha256 of the bytes). Covers:

  1. a monolithic push (POST + PUT ?digest=) of several files, a directory (tar+gzip layer),
     a custom config blob, a custom layer media type and manifest annotations;
  2. a chunked push (POST + several PATCHes + PUT ?digest=) of a blob of a few MiB, with a
     chunk size that does not divide it;
  3. a second push of the same files, which must find every blob present (HEAD) and upload
     nothing;
  4. an OCI 1.1 artifact with artifactType, annotations and a subject (built with oras-py's
     helpers and pushed with its upload_blob/upload_manifest), read back over plain HTTP
     (urllib): the manifest bytes, OCI-Subject, and the referrers API with and without an
     artifactType filter.

Prints what it does; exits 0 if all matched, 1 on any mismatch or error, 2 if oras-py is not
installed.
"""

import faulthandler
import functools
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import traceback
import types
import urllib.error
import urllib.parse
import urllib.request

try:
    import oras.client
    import oras.defaults
    import oras.oci
    import oras.provider
    import oras.version
except ImportError as e:  # never skip: a missing client is a failure
    print(f"FAIL: the oras package (oras-py) is not importable: {e}", file=sys.stderr)
    sys.exit(2)

MIB = 1024 * 1024
# Timeout of each HTTP request, and of the whole script.
REQUEST_TIMEOUT = 60
SCRIPT_TIMEOUT = 300

EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = oras.defaults.default_manifest_media_type
OCI_INDEX = oras.defaults.default_index_media_type


class Mismatch(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Mismatch(what)
    print(f"  ok: {what}")


def sha256_bytes(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


class Recorder:
    """Records every HTTP exchange oras-py makes, through a requests response hook."""

    def __init__(self, session):
        self.log = []
        session.hooks["response"].append(self.hook)

    def hook(self, response, *args, **kwargs):
        req = response.request
        self.log.append(
            {
                "method": req.method,
                "url": req.url,
                "status": response.status_code,
                "request_headers": req.headers.copy(),
                "headers": response.headers.copy(),
                # error bodies are small JSON; skip streamed blob downloads
                "content": b"" if req.method == "GET" else response.content[:300],
            }
        )

    def take(self):
        out, self.log = self.log, []
        return out


def summarize(log):
    for x in log:
        path = x["url"].split("/v2/", 1)[-1]
        extra = ""
        if x["method"] == "PATCH":
            extra = (
                f" Content-Range={x['request_headers'].get('Content-Range')}"
                f" -> Range={x['headers'].get('Range')}"
            )
        print(f"    {x['method']:5} /v2/{path} -> {x['status']}{extra}")


def make_client(host, https):
    client = oras.client.OrasClient(hostname=host, insecure=not https)
    # oras-py retries any request that answers 500 or raises, five times with sleeps of up to
    # 83 s: against a local test server that only hides failures and slows them down. Call the
    # undecorated request method instead (its 401/403 token handling is kept).
    client.do_request = types.MethodType(
        oras.provider.Registry.do_request.__wrapped__, client
    )
    # requests has no timeout by default: give each request one, so a hang fails the test.
    client.session.request = functools.partial(
        client.session.request, timeout=REQUEST_TIMEOUT
    )
    return client


class Http:
    """Plain HTTP reads of the registry with urllib, independent of oras-py."""

    def __init__(self, host, https):
        self.base = f"{'https' if https else 'http'}://{host}"

    def get(self, path, accept=None, method="GET"):
        req = urllib.request.Request(self.base + path, method=method)
        if accept:
            req.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()


def compare_trees(pushed_root, pulled_root, names):
    """Every file under pushed_root/<name> must be in pulled_root/<name> with equal bytes."""
    count = 0
    for name in names:
        src = os.path.join(pushed_root, name)
        paths = []
        if os.path.isdir(src):
            for d, _, files in os.walk(src):
                paths += [os.path.relpath(os.path.join(d, f), pushed_root) for f in files]
        else:
            paths.append(name)
        for rel in sorted(paths):
            a = os.path.join(pushed_root, rel)
            b = os.path.join(pulled_root, rel)
            check(os.path.isfile(b), f"pulled {rel} exists")
            da, db = read(a), read(b)
            check(
                da == db,
                f"pulled {rel} equals the pushed file byte for byte ({len(da)} bytes, "
                f"{sha256_bytes(db)})",
            )
            count += 1
    return count


def check_layers_against_files(manifest, pushed_root, pulled_files):
    """Plain-file layers: the layer digest/size must be those of the pulled (and pushed) file."""
    by_name = {os.path.basename(p): p for p in pulled_files}
    for layer in manifest["layers"]:
        title = (layer.get("annotations") or {}).get(oras.defaults.annotation_title)
        src = os.path.join(pushed_root, title)
        if os.path.isdir(src):
            continue  # a tar.gz made on the fly; its contents are compared file by file
        pulled = by_name.get(title)
        check(pulled is not None, f"layer {title} was pulled")
        check(
            layer["digest"] == sha256_file(pulled) == sha256_file(src),
            f"layer {title}: manifest digest {layer['digest']} = sha256 of pulled file = sha256 "
            "of pushed file",
        )
        check(
            layer["size"] == os.path.getsize(pulled) == os.path.getsize(src),
            f"layer {title}: size {layer['size']} matches",
        )


def check_manifest_over_http(http, repo, ref, expect_digest):
    status, headers, body = http.get(f"/v2/{repo}/manifests/{ref}", accept=OCI_MANIFEST)
    check(status == 200, f"GET /v2/{repo}/manifests/{ref} -> {status}")
    check(
        sha256_bytes(body) == expect_digest,
        f"manifest bytes hash to {expect_digest}",
    )
    check(
        headers.get("Docker-Content-Digest") == expect_digest,
        f"GET Docker-Content-Digest {headers.get('Docker-Content-Digest')} matches",
    )
    check(
        (headers.get("Content-Type") or "").split(";")[0].strip() == OCI_MANIFEST,
        f"manifest Content-Type is {headers.get('Content-Type')}",
    )
    return json.loads(body)


def check_blob_over_http(http, repo, digest, size):
    status, headers, _ = http.get(f"/v2/{repo}/blobs/{digest}", method="HEAD")
    check(status == 200, f"HEAD blob {digest[:19]}… -> {status}")
    check(
        headers.get("Content-Length") == str(size),
        f"HEAD blob Content-Length {headers.get('Content-Length')} == {size}",
    )
    check(
        headers.get("Docker-Content-Digest") == digest,
        "HEAD blob Docker-Content-Digest matches",
    )


def phase_monolithic(client, rec, http, host, repo, work):
    print(f"== 1. monolithic push of {host}/{repo}:v1")
    src = os.path.join(work, "mono")
    rnd = secrets.token_bytes
    write(os.path.join(src, "hello.txt"), b"hello from oras-py to edge-registry\n")
    write(os.path.join(src, "data.bin"), rnd(MIB + 4321))
    write(os.path.join(src, "tree", "a.txt"), b"file a\n" * 100)
    write(os.path.join(src, "tree", "sub", "b.bin"), rnd(70000))
    config = os.path.join(src, "config.json")
    write(config, json.dumps({"tool": "oras-py", "n": 1}).encode())
    names = ["hello.txt", "data.bin:application/vnd.edge-registry.test.data", "tree"]
    annotations = {
        "org.opencontainers.image.description": "edge-registry oras-py roundtrip",
        "com.example.phase": "monolithic",
    }

    os.chdir(src)  # oras-py wants files relative to the working directory
    target = f"{host}/{repo}:v1"
    resp = client.push(
        target=target,
        files=names,
        manifest_config="config.json:application/vnd.edge-registry.test.config.v1+json",
        manifest_annotations=annotations,
        quiet=True,
    )
    log = rec.take()
    summarize(log)
    check(resp.status_code == 201, f"manifest PUT -> {resp.status_code} (want 201)")
    digest = resp.headers.get("Docker-Content-Digest")
    check(bool(digest), f"manifest PUT returned Docker-Content-Digest {digest}")
    check(
        not any(x["method"] == "PATCH" for x in log),
        "monolithic push used no PATCH",
    )
    puts = [x for x in log if x["method"] == "PUT" and "/blobs/uploads/" in x["url"]]
    # hello, data, tree.tar.gz, config
    check(len(puts) == 4, f"4 blob PUTs with ?digest= ({len(puts)})")
    check(all(x["status"] == 201 for x in puts), "every blob PUT -> 201")
    for x in puts:
        want = x["url"].split("digest=", 1)[1].replace("%3A", ":")
        check(
            x["headers"].get("Docker-Content-Digest") == want,
            f"blob PUT Docker-Content-Digest = ?digest= {want[:19]}…",
        )

    manifest = check_manifest_over_http(http, repo, "v1", digest)
    check(
        manifest.get("annotations", {}).get("com.example.phase") == "monolithic",
        "manifest annotations kept",
    )
    check(
        manifest["config"]["mediaType"] == "application/vnd.edge-registry.test.config.v1+json"
        and manifest["config"]["digest"] == sha256_file(config),
        "config descriptor kept",
    )
    data_layer = [
        la for la in manifest["layers"]
        if la["annotations"][oras.defaults.annotation_title] == "data.bin"
    ][0]
    check(
        data_layer["mediaType"] == "application/vnd.edge-registry.test.data",
        "custom layer media type kept",
    )
    for layer in manifest["layers"] + [manifest["config"]]:
        check_blob_over_http(http, repo, layer["digest"], layer["size"])

    # Fetch the config blob itself with oras-py and compare.
    r = client.get_blob(f"{host}/{repo}", manifest["config"]["digest"])
    check(r.status_code == 200 and r.content == read(config), "config blob GET equals config.json")

    # Pull by tag and by digest with oras-py.
    for ref in (f"{host}/{repo}:v1", f"{host}/{repo}@{digest}"):
        out = os.path.join(work, "pull-mono-" + ("tag" if ":v1" in ref else "digest"))
        print(f"  pull {ref} -> {out}")
        pulled = client.pull(target=ref, outdir=out)
        rec.take()
        check(len(pulled) == 3, f"oras pulled 3 layers ({len(pulled)})")
        n = compare_trees(src, out, ["hello.txt", "data.bin", "tree"])
        check(n == 4, f"{n} files compared")
        check_layers_against_files(manifest, src, pulled)
        got = client.get_manifest(ref)
        check(got == manifest, "oras get_manifest equals the manifest fetched over HTTP")
    return src, digest, manifest


def phase_chunked(client, rec, http, host, repo, work):
    size = 5 * MIB + 12345
    chunk = MIB
    patches = -(-size // chunk)
    print(f"== 2. chunked push of {host}/{repo}:chunked ({size} bytes, chunk_size {chunk})")
    src = os.path.join(work, "chunked")
    write(os.path.join(src, "big.bin"), secrets.token_bytes(size))
    write(os.path.join(src, "small.txt"), b"a small file, also sent as a (single) chunk\n")
    os.chdir(src)
    resp = client.push(
        target=f"{host}/{repo}:chunked",
        files=["big.bin", "small.txt"],
        manifest_annotations={"com.example.phase": "chunked"},
        do_chunked=True,
        chunk_size=chunk,
        quiet=True,
    )
    log = rec.take()
    summarize(log)
    check(resp.status_code == 201, f"manifest PUT -> {resp.status_code} (want 201)")
    digest = resp.headers.get("Docker-Content-Digest")

    # big.bin: one session: POST, `patches` PATCHes, PUT.
    patch_log = [x for x in log if x["method"] == "PATCH"]
    check(
        len(patch_log) == patches + 1,
        f"{patches} PATCHes for big.bin + 1 for small.txt ({len(patch_log)})",
    )
    offset = 0
    for i, x in enumerate(patch_log[:patches]):
        n = min(chunk, size - offset)
        want_cr = f"{offset}-{offset + n - 1}"
        check(
            x["request_headers"].get("Content-Range") == want_cr,
            f"PATCH {i + 1} sent Content-Range {want_cr}",
        )
        offset += n
        check(x["status"] == 202, f"PATCH {i + 1} -> {x['status']} (want 202)")
        check(
            x["headers"].get("Range") == f"0-{offset - 1}",
            f"PATCH {i + 1} answered Range 0-{offset - 1} ({x['headers'].get('Range')})",
        )
        check(bool(x["headers"].get("Location")), f"PATCH {i + 1} answered a Location")
    puts = [x for x in log if x["method"] == "PUT" and "/blobs/uploads/" in x["url"]]
    check(all(x["status"] == 201 for x in puts), f"{len(puts)} closing PUTs -> 201")

    manifest = check_manifest_over_http(http, repo, "chunked", digest)
    for layer in manifest["layers"]:
        check_blob_over_http(http, repo, layer["digest"], layer["size"])

    out = os.path.join(work, "pull-chunked")
    pulled = client.pull(target=f"{host}/{repo}@{digest}", outdir=out)
    rec.take()
    check(len(pulled) == 2, f"oras pulled 2 layers ({len(pulled)})")
    compare_trees(src, out, ["big.bin", "small.txt"])
    check_layers_against_files(manifest, src, pulled)

    # A ranged read of the chunked blob, across a chunk boundary, over plain HTTP.
    big = [la for la in manifest["layers"]
           if la["annotations"][oras.defaults.annotation_title] == "big.bin"][0]
    req = urllib.request.Request(
        f"{http.base}/v2/{repo}/blobs/{big['digest']}",
        headers={"Range": f"bytes={MIB - 10}-{MIB + 9}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as r:
            status, part = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, part = e.code, e.read()
    whole = read(os.path.join(src, "big.bin"))
    check(
        status == 206 and part == whole[MIB - 10:MIB + 10],
        f"ranged GET across a chunk boundary -> {status}, 20 matching bytes",
    )
    return digest


def phase_repush(client, rec, host, repo, src, digest):
    print(f"== 3. re-push of the same files to {host}/{repo}:v1-again (blobs exist)")
    os.chdir(src)
    resp = client.push(
        target=f"{host}/{repo}:v1-again",
        files=["hello.txt", "data.bin:application/vnd.edge-registry.test.data"],
        manifest_config="config.json:application/vnd.edge-registry.test.config.v1+json",
        quiet=True,
    )
    log = rec.take()
    summarize(log)
    check(resp.status_code == 201, f"manifest PUT -> {resp.status_code}")
    check(
        not any(x["method"] in ("POST", "PATCH") for x in log),
        "no upload started: every blob HEAD said it exists",
    )
    heads = [x for x in log if x["method"] == "HEAD"]
    check(
        len(heads) == 3 and all(x["status"] == 200 for x in heads),
        f"{len(heads)} blob HEADs -> 200",
    )
    tags = client.get_tags(f"{host}/{repo}")
    rec.take()
    check(
        {"v1", "v1-again", "chunked"} <= set(tags),
        f"tags list has v1, v1-again, chunked ({tags})",
    )


def phase_artifact(client, rec, http, host, repo, work, subject_digest):
    artifact_type = "application/vnd.edge-registry.test.sbom.v1+json"
    print(f"== 4. artifact with artifactType {artifact_type} and subject {subject_digest[:19]}…")
    src = os.path.join(work, "artifact")
    sbom = os.path.join(src, "sbom.json")
    write(sbom, json.dumps({"packages": [{"name": "edge-registry"}]}, indent=2).encode())
    empty = os.path.join(src, "empty-config")
    write(empty, b"{}")
    container = client.get_container(f"{host}/{repo}:sbom")

    # The subject descriptor, from the registry's own view of the subject manifest.
    status, headers, body = http.get(f"/v2/{repo}/manifests/{subject_digest}", accept=OCI_MANIFEST)
    check(status == 200 and sha256_bytes(body) == subject_digest, "subject manifest fetched")
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=subject_digest, size=len(body))

    layer = oras.oci.NewLayer(sbom, media_type="application/spdx+json")
    layer["annotations"] = {oras.defaults.annotation_title: "sbom.json"}
    config = {
        "mediaType": EMPTY_CONFIG_MEDIA_TYPE,
        "digest": sha256_bytes(b"{}"),
        "size": 2,
    }
    check(config["digest"] == oras.defaults.blank_config_hash, "empty config digest")
    for path, desc in ((sbom, layer), (empty, config)):
        r = client.upload_blob(path, container, desc)
        check(r.status_code in (200, 201), f"upload_blob {desc['mediaType']} -> {r.status_code}")

    manifest = oras.oci.NewManifest()
    manifest["artifactType"] = artifact_type
    manifest["config"] = config
    manifest["layers"] = [layer]
    manifest["subject"] = {
        "mediaType": subject.mediaType,
        "digest": subject.digest,
        "size": subject.size,
    }
    manifest["annotations"] = {
        "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
        "com.example.kind": "sbom",
    }
    r = client.upload_manifest(manifest, container)
    summarize(rec.take())
    check(r.status_code == 201, f"manifest PUT -> {r.status_code} (want 201)")
    digest = r.headers.get("Docker-Content-Digest")
    check(bool(digest), f"Docker-Content-Digest {digest}")
    check(
        r.headers.get("OCI-Subject") == subject_digest,
        f"PUT answered OCI-Subject {r.headers.get('OCI-Subject')}",
    )
    sent = r.request.body
    check(sha256_bytes(sent) == digest, "digest is the sha256 of the bytes oras-py sent")

    got = check_manifest_over_http(http, repo, digest, digest)
    check(got == manifest, "manifest fetched by digest equals the one pushed")
    check(got.get("artifactType") == artifact_type, "artifactType kept")
    check(got.get("subject", {}).get("digest") == subject_digest, "subject kept")
    _, _, by_tag = http.get(f"/v2/{repo}/manifests/sbom", accept=OCI_MANIFEST)
    check(by_tag == sent, "manifest fetched by tag is byte-identical to what was sent")

    # The referrers API.
    status, headers, body = http.get(f"/v2/{repo}/referrers/{subject_digest}")
    check(status == 200, f"GET referrers -> {status}")
    check(
        (headers.get("Content-Type") or "").split(";")[0].strip() == OCI_INDEX,
        f"referrers Content-Type {headers.get('Content-Type')}",
    )
    index = json.loads(body)
    print(f"    referrers: {json.dumps(index)}")
    found = [m for m in index.get("manifests", []) if m.get("digest") == digest]
    check(len(found) == 1, "the artifact is listed among the subject's referrers")
    d = found[0]
    check(d.get("mediaType") == OCI_MANIFEST, "referrer mediaType")
    check(d.get("size") == len(sent), f"referrer size {d.get('size')} == {len(sent)}")
    check(d.get("artifactType") == artifact_type, "referrer artifactType")
    check(d.get("annotations") == manifest["annotations"], "referrer annotations")

    status, headers, body = http.get(
        # `+` must be sent as %2B: a query string decodes a raw `+` to a space.
        f"/v2/{repo}/referrers/{subject_digest}?"
        + urllib.parse.urlencode({"artifactType": artifact_type})
    )
    index = json.loads(body)
    check(
        status == 200 and [m["digest"] for m in index["manifests"]] == [digest],
        "referrers filtered by that artifactType list exactly the artifact",
    )
    check(
        headers.get("OCI-Filters-Applied") == "artifactType",
        f"OCI-Filters-Applied {headers.get('OCI-Filters-Applied')}",
    )
    status, _, body = http.get(
        f"/v2/{repo}/referrers/{subject_digest}?artifactType=application/x-other"
    )
    check(
        status == 200 and json.loads(body)["manifests"] == [],
        "referrers filtered by another artifactType list nothing",
    )

    # Pull the artifact with oras-py too.
    out = os.path.join(work, "pull-artifact")
    pulled = client.pull(target=f"{host}/{repo}@{digest}", outdir=out)
    rec.take()
    check(len(pulled) == 1, "oras pulled the sbom layer")
    compare_trees(src, out, ["sbom.json"])
    check(sha256_file(pulled[0]) == layer["digest"], "sbom digest matches its layer")


def phase_empty(client, rec, http, host, repo, work):
    print(f"== 5. an empty (0-byte) file, pushed chunked and monolithic to {host}/{repo}-*")
    src = os.path.join(work, "empty")
    write(os.path.join(src, "empty.txt"), b"")
    write(os.path.join(src, "other.txt"), b"not empty\n")
    os.chdir(src)
    failures = []
    # One repository each, so that each push really uploads the empty blob (on a registry
    # that has never stored it before).
    for tag, chunked in (("empty-chunked", True), ("empty-mono", False)):
        target = f"{host}/{repo}-{tag}:{tag}"
        print(f"  -- {target}")
        try:
            push_error = None
            try:
                resp = client.push(
                    target=target,
                    files=["empty.txt", "other.txt"],
                    do_chunked=chunked,
                    chunk_size=MIB,
                    quiet=True,
                )
            except Exception as e:  # noqa: BLE001 - first report the empty blob's upload
                push_error = e
            log = rec.take()
            summarize(log)
            # oras-py hides a failed upload of the empty blob (it then pretends 200), so look
            # at the closing PUT of the empty blob's upload session itself.
            empty_puts = [
                x for x in log
                if x["method"] == "PUT" and "/blobs/uploads/" in x["url"]
                and oras.defaults.blank_hash.split(":")[1] in x["url"]
            ]
            heads = [x for x in log if x["method"] == "HEAD"
                     and x["url"].endswith(oras.defaults.blank_hash)]
            if heads and heads[0]["status"] == 200:
                print("    (the empty blob already exists in the repository)")
            else:
                check(len(empty_puts) == 1, "the empty blob's upload was closed with a PUT")
                x = empty_puts[0]
                check(
                    x["status"] == 201,
                    f"POST then PUT ?digest={oras.defaults.blank_hash[:19]}… with an empty "
                    f"body (Content-Length: {x['request_headers'].get('Content-Length')}) "
                    f"-> {x['status']} (want 201) {x['content']}",
                )
            if push_error is not None:
                raise push_error
            check(resp.status_code == 201, f"manifest PUT -> {resp.status_code} (want 201)")
            check_blob_over_http(http, f"{repo}-{tag}", oras.defaults.blank_hash, 0)
            out = os.path.join(work, f"pull-{tag}")
            pulled = client.pull(target=target, outdir=out)
            rec.take()
            check(len(pulled) == 2, f"oras pulled 2 layers ({len(pulled)})")
            compare_trees(src, out, ["empty.txt", "other.txt"])
        except Exception as e:  # noqa: BLE001
            rec.take()
            print(f"  FAILED {tag}: {e}")
            failures.append(f"{tag}: {e}")
    if failures:
        raise Mismatch("; ".join(failures))


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    https = "--https" in argv[1:]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 1
    host = args[0]
    faulthandler.dump_traceback_later(SCRIPT_TIMEOUT, exit=True)
    print(f"oras-py {oras.version.__version__}, registry {host} (https={https})")

    client = make_client(host, https)
    rec = Recorder(client.session)
    http = Http(host, https)
    suffix = secrets.token_hex(4)
    work = tempfile.mkdtemp(prefix="oras-roundtrip-")
    cwd = os.getcwd()
    repo = f"oras-test/roundtrip-{suffix}"
    state = {}
    phases = [
        ("monolithic", lambda: state.update(
            mono=phase_monolithic(client, rec, http, host, repo, work))),
        ("chunked", lambda: phase_chunked(client, rec, http, host, repo, work)),
        ("re-push", lambda: phase_repush(
            client, rec, host, repo, state["mono"][0], state["mono"][1])),
        ("artifact", lambda: phase_artifact(
            client, rec, http, host, repo, work, state["mono"][1])),
        ("empty-file", lambda: phase_empty(
            client, rec, http, host, f"oras-test/empty-{suffix}", work)),
    ]
    failed = []
    try:
        for name, run in phases:
            if name in ("re-push", "artifact") and "mono" not in state:
                print(f"== {name}: not run, it needs the monolithic push")
                failed.append(name)
                continue
            try:
                run()
            except Exception as e:  # noqa: BLE001 - any failure is a test failure
                traceback.print_exc()
                for x in rec.take()[-8:]:
                    print(f"  {x['method']} {x['url']} -> {x['status']} {x['headers']}",
                          file=sys.stderr)
                print(f"FAIL [{name}]: {e}")
                failed.append(name)
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(f"FAIL: {len(failed)} of {len(phases)} phases failed: {', '.join(failed)}")
        return 1
    print("PASS: oras-py monolithic, chunked, re-push, artifact/referrers and empty-file round trips")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
