//! The storage primitives the core relies on, checked the same way on the in-memory and the
//! filesystem stores.

use bytes::Bytes;
use edge_registry::native::fs::FsStorage;
use edge_registry::storage::{memory::MemoryStorage, Storage};

async fn conditional_writes(s: &impl Storage) {
    let key = "_uploads/x";
    assert!(s.get_versioned(key).await.unwrap().is_none());
    assert!(
        !s.put_if(key, Bytes::from_static(b"a"), "0").await.unwrap(),
        "absent key"
    );
    s.put(key, Bytes::from_static(b"one")).await.unwrap();
    let (value, v1) = s.get_versioned(key).await.unwrap().unwrap();
    assert_eq!(value.as_ref(), b"one");

    // Two writers read the same version: the first wins, the second is refused.
    assert!(s
        .put_if(key, Bytes::from_static(b"two"), &v1)
        .await
        .unwrap());
    assert!(!s
        .put_if(key, Bytes::from_static(b"three"), &v1)
        .await
        .unwrap());
    let (value, v2) = s.get_versioned(key).await.unwrap().unwrap();
    assert_eq!(value.as_ref(), b"two");
    assert_ne!(v1, v2);
    assert!(s
        .put_if(key, Bytes::from_static(b"four"), &v2)
        .await
        .unwrap());
    assert_eq!(s.get(key).await.unwrap().unwrap().as_ref(), b"four");

    s.delete(key).await.unwrap();
    assert!(
        !s.put_if(key, Bytes::from_static(b"five"), &v2)
            .await
            .unwrap(),
        "deleted key"
    );
    assert!(s.get(key).await.unwrap().is_none());
}

async fn listing(s: &impl Storage) {
    for k in ["d/b", "d/a", "d/c/deeper", "e/x"] {
        s.put(k, Bytes::from_static(b"")).await.unwrap();
    }
    let mut names = s.list("d").await.unwrap();
    names.sort();
    assert_eq!(
        names,
        ["a", "b"],
        "only the objects directly under the folder"
    );
    assert!(s.list("nothing").await.unwrap().is_empty());
}

#[tokio::test]
async fn memory_store() {
    let s = MemoryStorage::new();
    conditional_writes(&s).await;
    listing(&s).await;
}

#[tokio::test]
async fn filesystem_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::open(dir.path()).unwrap();
    conditional_writes(&s).await;
    listing(&s).await;
}
