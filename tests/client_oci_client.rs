//! Interoperability: the Rust `oci-client` crate (as used by wasmtime, krustlet, wash, …)
//! pushes to and pulls from a running registry over plain HTTP with anonymous auth.
//!
//! Covers a full image push (config + several layers, one spanning more than one of the
//! client's 4 MiB upload chunks) and pull, manifest HEAD/GET by tag and by digest, tag
//! listing with pagination, a second tag, an image index with platform resolution, the
//! different blob upload modes the client has (chunked, streamed, monolithic, cross-repo
//! mount), ranged blob reads, the referrers API, and the error envelopes the client parses.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::content::{self, sha256};
use common::{repo, Server};
use futures_util::{stream, StreamExt};
use oci_client::client::{
    linux_amd64_resolver, BlobResponse, ClientConfig, ClientProtocol, Config, ImageLayer,
};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest, OciManifest,
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::{json, Value};

/// The client's upload chunk size (`PUSH_CHUNK_MAX_SIZE` in oci-client).
const CLIENT_CHUNK: usize = 4 * 1024 * 1024;

const ANON: RegistryAuth = RegistryAuth::Anonymous;

fn client() -> Client {
    client_with(ClientConfig {
        protocol: ClientProtocol::Http,
        platform_resolver: Some(Box::new(linux_amd64_resolver)),
        ..Default::default()
    })
}

fn client_with(config: ClientConfig) -> Client {
    Client::try_from(config).expect("build oci-client")
}

fn tag_ref(server: &Server, repository: &str, tag: &str) -> Reference {
    Reference::with_tag(server.host(), repository.to_string(), tag.to_string())
}

fn digest_ref(server: &Server, repository: &str, digest: &str) -> Reference {
    Reference::with_digest(server.host(), repository.to_string(), digest.to_string())
}

/// Canonical JSON (sorted keys, no whitespace), as oci-client serializes manifests, so the
/// test knows the exact bytes, and hence the digest, the client sent.
fn canonical(v: &Value) -> Vec<u8> {
    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push(b'{');
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend(serde_json::to_vec(k).unwrap());
                    out.push(b':');
                    write(v, out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(v, out);
                }
                out.push(b']');
            }
            other => out.extend(serde_json::to_vec(other).unwrap()),
        }
    }
    let mut out = Vec::new();
    write(v, &mut out);
    out
}

fn canonical_of(m: &impl serde::Serialize) -> Vec<u8> {
    canonical(&serde_json::to_value(m).unwrap())
}

fn image_config(arch: &str) -> Config {
    let cfg = json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    Config::new(
        serde_json::to_vec(&cfg).unwrap(),
        IMAGE_CONFIG_MEDIA_TYPE.to_string(),
        None,
    )
}

/// Config plus three layers: a small one, one of 6 MiB + 123 bytes (two upload chunks, the
/// second partial) and a tiny gzip-typed one with an annotation.
fn image(seed: u64, arch: &str) -> (Vec<ImageLayer>, Config) {
    let mut ann = BTreeMap::new();
    ann.insert(
        "org.opencontainers.image.title".to_string(),
        "hello.txt".to_string(),
    );
    let layers = vec![
        ImageLayer::oci_v1(content::range(seed, 0, 10_000), None),
        ImageLayer::oci_v1(content::range(seed + 1, 0, 6 * 1024 * 1024 + 123), None),
        ImageLayer::oci_v1_gzip(
            format!("hello from {arch} {seed}\n").into_bytes(),
            Some(ann),
        ),
    ];
    (layers, image_config(arch))
}

/// `Client::pull` downloads layers concurrently and returns them in completion order, not
/// manifest order, so compare them keyed by digest.
fn assert_same_layers(got: &[ImageLayer], want: &[ImageLayer]) {
    let key = |l: &ImageLayer| (l.sha256_digest(), l.data.len(), l.media_type.clone());
    let mut got: Vec<_> = got.iter().map(|l| (key(l), l)).collect();
    let mut want: Vec<_> = want.iter().map(|l| (key(l), l)).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let keys = |v: &[((String, usize, String), &ImageLayer)]| -> Vec<_> {
        v.iter().map(|(k, _)| k.clone()).collect()
    };
    assert_eq!(
        keys(&got),
        keys(&want),
        "pulled layers (digest, size, media type)"
    );
    for ((k, g), (_, w)) in got.iter().zip(&want) {
        assert!(g.data == w.data, "bytes of layer {}", k.0);
        assert_eq!(g.annotations, w.annotations, "annotations of layer {}", k.0);
    }
}

fn registry_error_code(err: &OciDistributionError) -> Option<&OciErrorCode> {
    match err {
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.first().map(|e| &e.code)
        }
        _ => None,
    }
}

#[tokio::test]
async fn push_then_pull_image_round_trip() {
    let server = Server::start();
    let client = client();
    let name = repo("oci-client/roundtrip");
    let reference = tag_ref(&server, &name, "v1");
    let (layers, config) = image(1, "amd64");
    assert!(
        layers[1].data.len() > CLIENT_CHUNK,
        "big layer spans chunks"
    );

    for layer in &layers {
        assert!(
            !client
                .blob_exists(&reference, &layer.sha256_digest())
                .await
                .unwrap(),
            "blob present before push"
        );
    }

    let expected = OciImageManifest::build(&layers, &config, None);
    let expected_bytes = canonical_of(&expected);
    let expected_digest = sha256(&expected_bytes);

    let pushed = client
        .push(&reference, &layers, config.clone(), &ANON, None)
        .await
        .expect("push image");
    let base = format!("http://{}/v2/{}", server.host(), name);
    assert_eq!(
        pushed.manifest_url,
        format!("{base}/manifests/{expected_digest}")
    );
    assert_eq!(
        pushed.config_url,
        format!("{base}/blobs/{}", config.sha256_digest())
    );

    for layer in &layers {
        assert!(client
            .blob_exists(&reference, &layer.sha256_digest())
            .await
            .unwrap());
    }
    assert!(client
        .blob_exists(&reference, &config.sha256_digest())
        .await
        .unwrap());

    // HEAD (Docker-Content-Digest) by tag and by digest.
    assert_eq!(
        client
            .fetch_manifest_digest(&reference, &ANON)
            .await
            .unwrap(),
        expected_digest
    );
    let by_digest = digest_ref(&server, &name, &expected_digest);
    assert_eq!(
        client
            .fetch_manifest_digest(&by_digest, &ANON)
            .await
            .unwrap(),
        expected_digest
    );

    // The registry gives back exactly the bytes the client sent.
    let (raw, raw_digest) = client
        .pull_manifest_raw(&reference, &ANON, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .unwrap();
    assert_eq!(raw_digest, expected_digest);
    assert_eq!(
        String::from_utf8_lossy(&raw),
        String::from_utf8_lossy(&expected_bytes)
    );

    // Parsed manifest, by tag and by digest.
    for r in [&reference, &by_digest] {
        let (manifest, digest) = client.pull_manifest(r, &ANON).await.unwrap();
        assert_eq!(digest, expected_digest);
        let OciManifest::Image(m) = manifest else {
            panic!("expected an image manifest, got {manifest}");
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::to_value(&expected).unwrap()
        );
    }

    let (m, digest, config_json) = client
        .pull_manifest_and_config(&reference, &ANON)
        .await
        .unwrap();
    assert_eq!(digest, expected_digest);
    assert_eq!(m.config.digest, config.sha256_digest());
    assert_eq!(config_json.as_bytes(), &config.data[..]);

    // Full pull: every layer's bytes, media type and annotations, plus config and digest.
    let pulled = client
        .pull(
            &reference,
            &ANON,
            vec![IMAGE_LAYER_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE],
        )
        .await
        .expect("pull image");
    assert_eq!(pulled.digest.as_deref(), Some(expected_digest.as_str()));
    assert_eq!(pulled.config.data, config.data);
    assert_eq!(pulled.config.media_type, IMAGE_CONFIG_MEDIA_TYPE);
    assert_same_layers(&pulled.layers, &layers);

    // A client refuses layers of media types it was not told to accept.
    let err = client
        .pull(&reference, &ANON, vec![IMAGE_LAYER_MEDIA_TYPE])
        .await
        .err()
        .expect("pull refuses a gzip layer it was not told to accept");
    assert!(
        matches!(
            err,
            OciDistributionError::IncompatibleLayerMediaTypeError(_)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn second_tags_and_tag_listing() {
    let server = Server::start();
    let client = client();
    let name = repo("oci-client/tags");
    let (layers, config) = image(10, "amd64");
    let v1 = tag_ref(&server, &name, "v1");
    client
        .push(&v1, &layers, config.clone(), &ANON, None)
        .await
        .unwrap();

    let (manifest, digest) = client.pull_manifest(&v1, &ANON).await.unwrap();
    // Tag the same manifest twice more by pushing it again under new tags.
    for tag in ["latest", "1.0.0"] {
        let url = client
            .push_manifest(&tag_ref(&server, &name, tag), &manifest)
            .await
            .unwrap();
        assert!(
            url.ends_with(&format!("/v2/{name}/manifests/{digest}")),
            "{url}"
        );
        assert_eq!(
            client
                .fetch_manifest_digest(&tag_ref(&server, &name, tag), &ANON)
                .await
                .unwrap(),
            digest
        );
    }

    // A different image under a fourth tag.
    let (layers2, config2) = image(20, "amd64");
    let v2 = tag_ref(&server, &name, "v2");
    client
        .push(&v2, &layers2, config2, &ANON, None)
        .await
        .unwrap();
    let digest2 = client.fetch_manifest_digest(&v2, &ANON).await.unwrap();
    assert_ne!(digest2, digest);
    assert_eq!(
        client.fetch_manifest_digest(&v1, &ANON).await.unwrap(),
        digest
    );

    // Tags come back in lexical order.
    let tags = client.list_tags(&v1, &ANON, None, None).await.unwrap();
    assert_eq!(tags.name, name);
    assert_eq!(tags.tags, ["1.0.0", "latest", "v1", "v2"]);

    // Pagination with n and last.
    let page = client.list_tags(&v1, &ANON, Some(2), None).await.unwrap();
    assert_eq!(page.tags, ["1.0.0", "latest"]);
    let page = client
        .list_tags(&v1, &ANON, Some(2), Some("latest"))
        .await
        .unwrap();
    assert_eq!(page.tags, ["v1", "v2"]);
    let page = client
        .list_tags(&v1, &ANON, Some(10), Some("v2"))
        .await
        .unwrap();
    assert!(page.tags.is_empty(), "{:?}", page.tags);

    // Moving a tag: v1 now points at the second image.
    let (m2, _) = client.pull_manifest(&v2, &ANON).await.unwrap();
    client.push_manifest(&v1, &m2).await.unwrap();
    assert_eq!(
        client.fetch_manifest_digest(&v1, &ANON).await.unwrap(),
        digest2
    );
    // The first image is still there by digest and by its other tags.
    let old = digest_ref(&server, &name, &digest);
    assert_eq!(
        client.fetch_manifest_digest(&old, &ANON).await.unwrap(),
        digest
    );
    assert_eq!(
        client
            .fetch_manifest_digest(&tag_ref(&server, &name, "latest"), &ANON)
            .await
            .unwrap(),
        digest
    );
}

#[tokio::test]
async fn image_index_push_and_platform_resolution() {
    let server = Server::start();
    let name = repo("oci-client/multiarch");

    // Two single-platform images, pushed by digest only (no tag).
    let mut entries = Vec::new();
    let mut images = Vec::new();
    let c = client();
    for (seed, arch) in [(30, "amd64"), (40, "arm64")] {
        let (layers, config) = image(seed, arch);
        let manifest = OciImageManifest::build(&layers, &config, None);
        let bytes = canonical_of(&manifest);
        let digest = sha256(&bytes);
        let by_digest = digest_ref(&server, &name, &digest);
        let pushed = c
            .push(&by_digest, &layers, config, &ANON, Some(manifest))
            .await
            .unwrap_or_else(|e| panic!("push {arch} by digest: {e:?}"));
        assert!(
            pushed.manifest_url.ends_with(&digest),
            "{}",
            pushed.manifest_url
        );
        entries.push(
            serde_json::from_value::<ImageIndexEntry>(json!({
                "mediaType": OCI_IMAGE_MEDIA_TYPE,
                "digest": digest,
                "size": bytes.len(),
                "platform": {"architecture": arch, "os": "linux"},
            }))
            .unwrap(),
        );
        images.push((arch, digest, layers));
    }

    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()),
        manifests: entries,
        artifact_type: None,
        annotations: Some(BTreeMap::from([(
            "org.opencontainers.image.ref.name".to_string(),
            "multi".to_string(),
        )])),
    };
    let index_digest = sha256(&canonical_of(&index));
    let multi = tag_ref(&server, &name, "multi");
    let url = c
        .push_manifest_list(&multi, &ANON, index.clone())
        .await
        .expect("push index");
    assert!(
        url.ends_with(&format!("/manifests/{index_digest}")),
        "{url}"
    );

    // The index itself, by tag and by digest.
    assert_eq!(
        c.fetch_manifest_digest(&multi, &ANON).await.unwrap(),
        index_digest
    );
    let (got, digest) = c.pull_manifest(&multi, &ANON).await.unwrap();
    assert_eq!(digest, index_digest);
    let OciManifest::ImageIndex(got) = got else {
        panic!("expected an image index, got {got}");
    };
    assert_eq!(
        serde_json::to_value(&got).unwrap(),
        serde_json::to_value(&index).unwrap()
    );
    let (raw, _) = c
        .pull_manifest_raw(
            &digest_ref(&server, &name, &index_digest),
            &ANON,
            &[OCI_IMAGE_INDEX_MEDIA_TYPE],
        )
        .await
        .unwrap();
    assert_eq!(&raw[..], &canonical_of(&index)[..]);

    // Platform resolution through the index: linux/amd64 with the client above, linux/arm64
    // with a client whose resolver picks it.
    let arm = client_with(ClientConfig {
        protocol: ClientProtocol::Http,
        platform_resolver: Some(Box::new(|entries: &[ImageIndexEntry]| {
            entries
                .iter()
                .find(|e| {
                    e.platform
                        .as_ref()
                        .is_some_and(|p| p.architecture.to_string() == "arm64")
                })
                .map(|e| e.digest.clone())
        })),
        ..Default::default()
    });
    for (client, (arch, digest, layers)) in [&c, &arm].into_iter().zip(&images) {
        let (m, d, list) = client
            .pull_image_manifest_and_list_digest(&multi, &ANON)
            .await
            .unwrap();
        assert_eq!(&d, digest, "{arch}");
        assert_eq!(list.as_deref(), Some(index_digest.as_str()), "{arch}");
        assert_eq!(m.layers.len(), layers.len());

        let pulled = client
            .pull(
                &multi,
                &ANON,
                vec![IMAGE_LAYER_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE],
            )
            .await
            .unwrap();
        assert_eq!(pulled.digest.as_deref(), Some(digest.as_str()));
        let config: Value = serde_json::from_slice(&pulled.config.data).unwrap();
        assert_eq!(config["architecture"], *arch);
        assert_same_layers(&pulled.layers, layers);
    }

    // A client with no matching platform gets a clear error rather than a wrong image.
    let none = client_with(ClientConfig {
        protocol: ClientProtocol::Http,
        platform_resolver: Some(Box::new(|_: &[ImageIndexEntry]| None)),
        ..Default::default()
    });
    let err = none.pull_image_manifest(&multi, &ANON).await.unwrap_err();
    assert!(
        matches!(err, OciDistributionError::ImageManifestNotFoundError(_)),
        "{err:?}"
    );

    let tags = c.list_tags(&multi, &ANON, None, None).await.unwrap();
    assert_eq!(tags.tags, ["multi"]);
}

#[tokio::test]
async fn blob_upload_modes_mount_and_ranges() {
    let server = Server::start();
    let chunked = client();
    let name = repo("oci-client/blobs");
    let reference = tag_ref(&server, &name, "unused");

    // Streamed chunked upload: odd-sized pieces re-split by the client into 4 MiB PATCHes with
    // Content-Range; unlike push_blob there is no silent fallback to a monolithic PUT here.
    let data = content::range(50, 0, CLIENT_CHUNK + 777_777);
    let digest = sha256(&data);
    let pieces: Vec<oci_client::errors::Result<Bytes>> = data
        .chunks(1_000_003)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let url = chunked
        .push_blob_stream(&reference, stream::iter(pieces), &digest, None)
        .await
        .expect("chunked stream push");
    assert!(
        url.ends_with(&format!("/v2/{name}/blobs/{digest}")),
        "{url}"
    );
    let desc = OciDescriptor {
        digest: digest.clone(),
        size: data.len() as i64,
        media_type: IMAGE_LAYER_MEDIA_TYPE.to_string(),
        ..Default::default()
    };
    let mut out = Vec::new();
    chunked
        .pull_blob(&reference, &desc, &mut out)
        .await
        .unwrap();
    assert!(out == data, "chunked blob differs");

    // Chunked upload where the client computes the digest while sending.
    let data2 = content::range(51, 0, 2 * CLIENT_CHUNK);
    let resp = chunked
        .push_blob_stream_chunked(
            &reference,
            stream::iter(vec![Ok(Bytes::from(data2.clone()))]),
        )
        .await
        .expect("push_blob_stream_chunked");
    assert_eq!(resp.blob_digest, sha256(&data2));
    assert_eq!(resp.size, data2.len() as u64);
    assert!(chunked
        .blob_exists(&reference, &resp.blob_digest)
        .await
        .unwrap());

    // Monolithic upload: POST then a single PUT with the whole body.
    let mono = client_with(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: true,
        ..Default::default()
    });
    let data3 = content::range(52, 0, 3 * 1024 * 1024 + 5);
    let digest3 = sha256(&data3);
    let url = mono
        .push_blob(&reference, data3.clone(), &digest3)
        .await
        .expect("monolithic push");
    assert!(url.ends_with(&format!("/blobs/{digest3}")), "{url}");
    let data4 = content::range(53, 0, 4321);
    let digest4 = sha256(&data4);
    mono.push_blob_stream(
        &reference,
        stream::iter(vec![Ok(Bytes::from(data4.clone()))]),
        &digest4,
        Some(data4.len() as u64),
    )
    .await
    .expect("monolithic stream push");
    let desc4 = OciDescriptor {
        digest: digest4.clone(),
        size: data4.len() as i64,
        ..Default::default()
    };
    let mut out = Vec::new();
    mono.pull_blob(&reference, &desc4, &mut out).await.unwrap();
    assert_eq!(out, data4);

    // A wrong digest on the closing PUT is refused, and nothing is stored under it.
    let wrong = sha256(b"not the data");
    let err = chunked
        .push_blob(&reference, content::range(54, 0, 1000), &wrong)
        .await
        .unwrap_err();
    match &err {
        OciDistributionError::ServerError { code, message, .. } => {
            assert_eq!(*code, 400, "{message}");
            assert!(message.contains("DIGEST_INVALID"), "{message}");
        }
        other => panic!("expected a 400 DIGEST_INVALID, got {other:?}"),
    }
    assert!(!chunked.blob_exists(&reference, &wrong).await.unwrap());

    // Ranged reads: a partial response is exactly the requested slice.
    let mut stream = chunked.pull_blob_stream(&reference, &desc).await.unwrap();
    assert_eq!(stream.content_length, Some(data.len() as u64));
    let mut whole = Vec::new();
    while let Some(piece) = stream.next().await {
        whole.extend_from_slice(&piece.unwrap());
    }
    assert!(whole == data, "streamed blob differs");
    for (offset, length) in [
        (0u64, Some(1u64)),
        (CLIENT_CHUNK as u64 - 10, Some(20)),
        (4_900_000, None),
    ] {
        let resp = chunked
            .pull_blob_stream_partial(&reference, &desc, offset, length)
            .await
            .unwrap();
        let BlobResponse::Partial(mut s) = resp else {
            panic!("expected 206 for offset {offset} length {length:?}");
        };
        let end = length.map_or(data.len(), |l| (offset + l) as usize);
        assert_eq!(s.content_length, Some(end as u64 - offset));
        let mut got = Vec::new();
        while let Some(piece) = s.next().await {
            got.extend_from_slice(&piece.unwrap());
        }
        assert!(got == data[offset as usize..end], "range {offset}..{end}");
    }

    // A range starting past the end is refused (416), not silently served in full.
    let past_end = chunked
        .pull_blob_stream_partial(&reference, &desc, data.len() as u64 + 1, None)
        .await;
    assert!(past_end.is_err(), "range past the end was served");

    // Cross-repository mount: the blob appears in another repository without re-upload.
    let other_name = repo("oci-client/mounted");
    let other = tag_ref(&server, &other_name, "unused");
    assert!(!chunked.blob_exists(&other, &digest3).await.unwrap());
    chunked
        .mount_blob(&other, &reference, &digest3)
        .await
        .expect("mount");
    assert!(chunked.blob_exists(&other, &digest3).await.unwrap());
    let desc3 = OciDescriptor {
        digest: digest3.clone(),
        size: data3.len() as i64,
        ..Default::default()
    };
    let mut out = Vec::new();
    chunked.pull_blob(&other, &desc3, &mut out).await.unwrap();
    assert!(out == data3, "mounted blob differs");
}

#[tokio::test]
async fn referrers_of_a_pushed_image() {
    let server = Server::start();
    let c = client();
    let name = repo("oci-client/referrers");
    let subject_ref = tag_ref(&server, &name, "app");
    let (layers, config) = image(60, "amd64");
    c.push(&subject_ref, &layers, config, &ANON, None)
        .await
        .unwrap();
    let (_, subject_digest) = c.pull_manifest(&subject_ref, &ANON).await.unwrap();
    let subject_size = {
        let (raw, _) = c
            .pull_manifest_raw(&subject_ref, &ANON, &[OCI_IMAGE_MEDIA_TYPE])
            .await
            .unwrap();
        raw.len() as i64
    };
    let by_digest = digest_ref(&server, &name, &subject_digest);

    // No referrers yet.
    let empty = c.pull_referrers(&by_digest, None).await.unwrap();
    assert!(empty.manifests.is_empty(), "{empty}");

    // An artifact (e.g. a signature) whose subject is the image, pushed by digest.
    let sig_type = "application/vnd.example.signature.v1";
    let blob = b"signature bytes".to_vec();
    let art_layer = ImageLayer::new(blob.clone(), "application/octet-stream".into(), None);
    let empty_config = Config::new(
        b"{}".to_vec(),
        "application/vnd.oci.empty.v1+json".into(),
        None,
    );
    let mut art = OciImageManifest::build(
        std::slice::from_ref(&art_layer),
        &empty_config,
        Some(BTreeMap::from([(
            "org.example.kind".to_string(),
            "sig".to_string(),
        )])),
    );
    art.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
    art.artifact_type = Some(sig_type.to_string());
    art.subject = Some(OciDescriptor {
        media_type: OCI_IMAGE_MEDIA_TYPE.to_string(),
        digest: subject_digest.clone(),
        size: subject_size,
        ..Default::default()
    });
    let art_bytes = canonical_of(&art);
    let art_digest = sha256(&art_bytes);
    c.push(
        &digest_ref(&server, &name, &art_digest),
        &[art_layer],
        empty_config,
        &ANON,
        Some(art.clone()),
    )
    .await
    .expect("push artifact with subject");

    let index = c.pull_referrers(&by_digest, None).await.unwrap();
    assert_eq!(index.manifests.len(), 1, "{index}");
    let entry = &index.manifests[0];
    assert_eq!(entry.digest, art_digest);
    assert_eq!(entry.size, art_bytes.len() as i64);
    assert_eq!(entry.media_type, OCI_IMAGE_MEDIA_TYPE);
    assert_eq!(entry.artifact_type.as_deref(), Some(sig_type));
    assert_eq!(
        entry
            .annotations
            .as_ref()
            .and_then(|a| a.get("org.example.kind"))
            .map(String::as_str),
        Some("sig")
    );

    let filtered = c.pull_referrers(&by_digest, Some(sig_type)).await.unwrap();
    assert_eq!(filtered.manifests.len(), 1);
    let filtered = c
        .pull_referrers(&by_digest, Some("application/vnd.example.other"))
        .await
        .unwrap();
    assert!(filtered.manifests.is_empty(), "{filtered}");
}

#[tokio::test]
async fn errors_reach_the_client_as_oci_envelopes() {
    let server = Server::start();
    let c = client();
    let name = repo("oci-client/errors");

    // Unknown repository / tag.
    let missing = tag_ref(&server, &name, "nope");
    let err = c.pull_manifest(&missing, &ANON).await.unwrap_err();
    assert!(
        matches!(
            registry_error_code(&err),
            Some(OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown)
        ),
        "{err:?}"
    );
    let err = c.list_tags(&missing, &ANON, None, None).await.unwrap_err();
    assert_eq!(
        registry_error_code(&err),
        Some(&OciErrorCode::NameUnknown),
        "{err:?}"
    );
    assert!(!c.blob_exists(&missing, &sha256(b"nothing")).await.unwrap());

    // A manifest that references blobs the registry does not have is refused.
    let (layers, config) = image(70, "amd64");
    let manifest = OciImageManifest::build(&layers, &config, None);
    let err = c
        .push_manifest(&tag_ref(&server, &name, "broken"), &manifest.into())
        .await
        .unwrap_err();
    match &err {
        OciDistributionError::ServerError { code, message, .. } => {
            assert_eq!(*code, 400, "{message}");
            assert!(
                message.contains("MANIFEST_BLOB_UNKNOWN") || message.contains("BLOB_UNKNOWN"),
                "{message}"
            );
        }
        other => panic!("expected 400 MANIFEST_BLOB_UNKNOWN, got {other:?}"),
    }

    // Pulling a blob by a digest the registry does not have.
    let desc = OciDescriptor {
        digest: sha256(b"absent"),
        size: 6,
        ..Default::default()
    };
    let mut out = Vec::new();
    let err = c.pull_blob(&missing, &desc, &mut out).await.unwrap_err();
    assert!(
        matches!(
            registry_error_code(&err),
            Some(OciErrorCode::BlobUnknown | OciErrorCode::NameUnknown)
        ),
        "{err:?}"
    );
    assert!(out.is_empty());
}
