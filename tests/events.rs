//! The events the core returns with each response (what notifications and metrics will
//! forward): exactly one per change or pull, none for HEADs, failures or reads of nothing, with
//! the operation's stable name and the user beside them.

mod common;

use bytes::Bytes;
use common::target::core;
use common::{content, Options};
use edge_registry::digest::Digest;
use edge_registry::event::Event;
use edge_registry::names::{Name, Tag};
use edge_registry::storage::memory::MemoryStorage;
use edge_registry::{Body, Outcome, Registry};
use http::{Method, Request, StatusCode};

async fn send(
    reg: &Registry<MemoryStorage>,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Outcome {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if !body.is_empty() {
        req = req.header("content-length", body.len());
    }
    let req = req.body(Body::Full(Bytes::copy_from_slice(body))).unwrap();
    reg.handle(req).await
}

fn d(s: &str) -> Digest {
    Digest::parse(s).unwrap()
}

#[tokio::test]
async fn each_change_and_pull_is_one_event() {
    let (reg, _) = core(MemoryStorage::new(), &Options::open());
    let repo = Name::parse("ev/app").unwrap();
    let other = Name::parse("ev/other").unwrap();
    let layer = content::bytes(7, 5000);
    let config = br#"{"os":"linux"}"#.to_vec();
    let (ld, cd) = (content::sha256(&layer), content::sha256(&config));

    // A monolithic upload: one push.
    let o = send(
        &reg,
        Method::POST,
        &format!("/v2/ev/app/blobs/uploads/?digest={ld}"),
        None,
        &layer,
    )
    .await;
    assert_eq!(o.response.status(), StatusCode::CREATED);
    assert_eq!(o.op, "upload.start");
    assert_eq!(
        o.events,
        [Event::BlobPushed {
            repo: repo.clone(),
            digest: d(&ld),
            size: 5000
        }]
    );

    // A chunked upload: nothing until it completes.
    let o = send(&reg, Method::POST, "/v2/ev/app/blobs/uploads/", None, b"").await;
    assert!(o.events.is_empty());
    let loc = o.response.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let o = send(&reg, Method::PATCH, &loc, None, &config).await;
    assert_eq!((o.op, o.events.len()), ("upload.patch", 0));
    let o = send(&reg, Method::PUT, &format!("{loc}?digest={cd}"), None, b"").await;
    assert_eq!(o.op, "upload.complete");
    assert_eq!(
        o.events,
        [Event::BlobPushed {
            repo: repo.clone(),
            digest: d(&cd),
            size: config.len() as u64
        }]
    );

    // A mount.
    let o = send(
        &reg,
        Method::POST,
        &format!("/v2/ev/other/blobs/uploads/?mount={ld}&from=ev/app"),
        None,
        b"",
    )
    .await;
    assert_eq!(o.response.status(), StatusCode::CREATED);
    assert_eq!(
        o.events,
        [Event::BlobMounted {
            repo: other.clone(),
            from: repo.clone(),
            digest: d(&ld),
            size: 5000
        }]
    );

    // A manifest by tag: pushed, and the tag moved; again: pushed, the tag did not move.
    let manifest = content::to_bytes(&content::image_of(&config, &[&layer]));
    let md = content::sha256(&manifest);
    let mt = content::OCI_MANIFEST;
    let tag = Tag::parse("v1").unwrap();
    let o = send(
        &reg,
        Method::PUT,
        "/v2/ev/app/manifests/v1",
        Some(mt),
        &manifest,
    )
    .await;
    assert_eq!(o.response.status(), StatusCode::CREATED);
    let size = manifest.len() as u64;
    assert_eq!(
        o.events,
        [
            Event::ManifestPushed {
                repo: repo.clone(),
                digest: d(&md),
                media_type: mt.into(),
                size,
                tag: Some(tag.clone())
            },
            Event::TagMoved {
                repo: repo.clone(),
                tag: tag.clone(),
                digest: d(&md),
                previous: None
            },
        ]
    );
    let o = send(
        &reg,
        Method::PUT,
        "/v2/ev/app/manifests/v1",
        Some(mt),
        &manifest,
    )
    .await;
    assert_eq!(o.events.len(), 1, "{:?}", o.events);
    let o = send(
        &reg,
        Method::PUT,
        "/v2/ev/app/manifests/v2",
        Some(mt),
        &manifest,
    )
    .await;
    assert_eq!(o.events.len(), 2);

    // Pulls: GETs are events, HEADs are not.
    let o = send(&reg, Method::GET, "/v2/ev/app/manifests/v1", None, b"").await;
    assert_eq!(o.op, "manifest.get");
    assert_eq!(
        o.events,
        [Event::ManifestPulled {
            repo: repo.clone(),
            digest: d(&md),
            media_type: mt.into(),
            size,
            tag: Some(tag.clone())
        }]
    );
    let o = send(&reg, Method::HEAD, "/v2/ev/app/manifests/v1", None, b"").await;
    assert_eq!((o.op, o.events.len()), ("manifest.head", 0));
    let o = send(
        &reg,
        Method::GET,
        &format!("/v2/ev/app/blobs/{ld}"),
        None,
        b"",
    )
    .await;
    assert_eq!(
        o.events,
        [Event::BlobPulled {
            repo: repo.clone(),
            digest: d(&ld),
            size: 5000
        }]
    );
    let o = send(
        &reg,
        Method::HEAD,
        &format!("/v2/ev/app/blobs/{ld}"),
        None,
        b"",
    )
    .await;
    assert!(o.events.is_empty());

    // Failures change nothing and say nothing.
    let missing = content::to_bytes(&content::image_of(&config, &[b"x"]));
    let o = send(
        &reg,
        Method::PUT,
        "/v2/ev/app/manifests/bad",
        Some(mt),
        &missing,
    )
    .await;
    assert_eq!(o.response.status(), StatusCode::BAD_REQUEST);
    assert!(o.events.is_empty());
    let o = send(&reg, Method::GET, "/v2/ev/app/manifests/nope", None, b"").await;
    assert_eq!(
        (o.response.status(), o.events.len()),
        (StatusCode::NOT_FOUND, 0)
    );
    let o = send(&reg, Method::GET, "/v2/ev/app/nowhere", None, b"").await;
    assert_eq!((o.op, o.events.len()), ("none", 0));

    // Deletes: a tag; a manifest by digest takes its remaining tag with it; a blob.
    let o = send(&reg, Method::DELETE, "/v2/ev/app/manifests/v1", None, b"").await;
    assert_eq!(
        o.events,
        [Event::TagDeleted {
            repo: repo.clone(),
            tag,
            digest: d(&md)
        }]
    );
    let o = send(
        &reg,
        Method::DELETE,
        &format!("/v2/ev/app/manifests/{md}"),
        None,
        b"",
    )
    .await;
    assert_eq!(
        o.events,
        [
            Event::TagDeleted {
                repo: repo.clone(),
                tag: Tag::parse("v2").unwrap(),
                digest: d(&md)
            },
            Event::ManifestDeleted {
                repo: repo.clone(),
                digest: d(&md)
            },
        ]
    );
    let o = send(
        &reg,
        Method::DELETE,
        &format!("/v2/ev/app/blobs/{ld}"),
        None,
        b"",
    )
    .await;
    assert_eq!(o.op, "blob.delete");
    assert_eq!(
        o.events,
        [Event::BlobDeleted {
            repo,
            digest: d(&ld)
        }]
    );
    let names: Vec<&str> = o.events.iter().map(Event::name).collect();
    assert_eq!(names, ["blob.deleted"]);
}

#[tokio::test]
async fn the_user_comes_with_the_outcome() {
    let (reg, _) = core(MemoryStorage::new(), &Options::mode("authenticated"));
    let (user, password) = common::ALICE;
    let basic = common::client::basic(user, password);
    let req = Request::get("/v2/")
        .header("authorization", basic)
        .body(Body::Empty)
        .unwrap();
    let o = reg.handle(req).await;
    assert_eq!(o.response.status(), StatusCode::OK);
    assert_eq!((o.op, o.user.as_deref()), ("base", Some(user)));
    let o = reg
        .handle(Request::get("/v2/").body(Body::Empty).unwrap())
        .await;
    assert_eq!(
        (o.response.status(), o.user),
        (StatusCode::UNAUTHORIZED, None)
    );
}
