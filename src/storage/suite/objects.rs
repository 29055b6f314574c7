//! Checks of small objects, conditional writes, listings and whole blobs.

use super::*;

// ---- small objects ----------------------------------------------------------------------------

pub(super) async fn objects<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let (key, nested) = (cx.key("obj/a"), cx.key("obj/a-dir/b"));
    ensure!(
        s.get(&key).await?.is_none(),
        "get of an absent key answered"
    );
    s.put(&key, Bytes::from_static(b"one")).await?;
    let got = s.get(&key).await?;
    ensure!(
        got.as_deref() == Some(b"one".as_ref()),
        "get after put: {got:?}"
    );
    s.put(&key, Bytes::from_static(b"two")).await?;
    let got = s.get(&key).await?;
    ensure!(
        got.as_deref() == Some(b"two".as_ref()),
        "get after overwrite: {got:?}"
    );
    s.put(&key, Bytes::new()).await?;
    let got = s.get(&key).await?;
    ensure!(
        got.as_deref() == Some(b"".as_ref()),
        "an empty object: {got:?}"
    );
    s.put(&nested, Bytes::from_static(b"deep")).await?;
    let got = s.get(&nested).await?;
    ensure!(
        got.as_deref() == Some(b"deep".as_ref()),
        "a nested key: {got:?}"
    );
    s.delete(&key).await?;
    ensure!(s.get(&key).await?.is_none(), "get after delete answered");
    s.delete(&key).await?;
    s.delete(&nested).await?;
    ensure!(s.get(&nested).await?.is_none(), "nested get after delete");
    Ok(String::new())
}

pub(super) async fn conditional_writes<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let key = cx.key("cond");
    ensure!(
        s.get_versioned(&key).await?.is_none(),
        "absent key has a version"
    );
    ensure!(
        !s.put_if(&key, Bytes::from_static(b"a"), "0").await?,
        "put_if wrote an absent key"
    );
    s.put(&key, Bytes::from_static(b"one")).await?;
    let (value, v1) = s
        .get_versioned(&key)
        .await?
        .ok_or(Fail("no version".into()))?;
    ensure!(value.as_ref() == b"one", "get_versioned: {value:?}");
    // Two writers read the same version: the first wins, the second is refused.
    ensure!(
        s.put_if(&key, Bytes::from_static(b"two"), &v1).await?,
        "put_if at the current version was refused"
    );
    ensure!(
        !s.put_if(&key, Bytes::from_static(b"three"), &v1).await?,
        "put_if at a stale version wrote"
    );
    let (value, v2) = s
        .get_versioned(&key)
        .await?
        .ok_or(Fail("no version".into()))?;
    ensure!(value.as_ref() == b"two", "after the race: {value:?}");
    ensure!(v1 != v2, "the version did not change with a write");
    ensure!(
        s.put_if(&key, Bytes::from_static(b"four"), &v2).await?,
        "put_if at the new version was refused"
    );
    let got = s.get(&key).await?;
    ensure!(got.as_deref() == Some(b"four".as_ref()), "get: {got:?}");
    s.delete(&key).await?;
    ensure!(
        !s.put_if(&key, Bytes::from_static(b"five"), &v2).await?,
        "put_if wrote a deleted key"
    );
    ensure!(s.get(&key).await?.is_none(), "a refused put_if wrote");
    // Create-only: the first writer creates, the second is refused, and a version follows.
    ensure!(
        s.put_new(&key, Bytes::from_static(b"new")).await?,
        "put_new of an absent key was refused"
    );
    ensure!(
        !s.put_new(&key, Bytes::from_static(b"again")).await?,
        "put_new overwrote an object"
    );
    let (value, v3) = s
        .get_versioned(&key)
        .await?
        .ok_or(Fail("no version after put_new".into()))?;
    ensure!(value.as_ref() == b"new", "after put_new: {value:?}");
    ensure!(
        s.put_if(&key, Bytes::from_static(b"six"), &v3).await?,
        "put_if after put_new was refused"
    );
    s.delete(&key).await?;
    ensure!(
        s.put_new(&key, Bytes::from_static(b"back")).await?,
        "put_new of a deleted key was refused"
    );
    s.delete(&key).await?;
    Ok(String::new())
}

pub(super) async fn list_current<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let dir = cx.key("list");
    let keys = [
        "d/b",
        "d/a",
        "d/c/deeper",
        "d/e/f/deepest",
        "e/x",
        "d-sibling",
    ];
    for k in keys {
        s.put(&format!("{dir}/{k}"), Bytes::new()).await?;
    }
    let d = format!("{dir}/d");
    let names = sorted(s.list(&d, Freshness::Current).await?);
    ensure!(
        names == ["a", "b"],
        "list of a folder: {names:?}, expected [a, b]"
    );
    let none = s.list(&cx.key("nothing"), Freshness::Current).await?;
    ensure!(none.is_empty(), "list of an absent folder: {none:?}");
    s.delete(&format!("{d}/a")).await?;
    s.put(&format!("{d}/z"), Bytes::new()).await?;
    let names = sorted(s.list(&d, Freshness::Current).await?);
    ensure!(
        names == ["b", "z"],
        "list after a delete and a put: {names:?}"
    );
    for k in keys.iter().chain(&["d/z"]) {
        s.delete(&format!("{dir}/{k}")).await?;
    }
    let names = s.list(&d, Freshness::Current).await?;
    ensure!(names.is_empty(), "list after deleting all: {names:?}");
    Ok(String::new())
}

pub(super) async fn list_cached<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let dir = cx.key("cached");
    for k in ["a", "b", "sub/c"] {
        s.put(&format!("{dir}/{k}"), Bytes::new()).await?;
    }
    // Never listed before, so no cache can hold an older answer.
    let first = sorted(s.list(&dir, Freshness::Cached).await?);
    ensure!(
        first == ["a", "b"],
        "first cached list: {first:?}, expected [a, b]"
    );
    s.delete(&format!("{dir}/a")).await?;
    s.put(&format!("{dir}/c"), Bytes::new()).await?;
    let current = sorted(s.list(&dir, Freshness::Current).await?);
    ensure!(
        current == ["b", "c"],
        "current list after a change: {current:?}"
    );
    // Cached may answer the earlier listing or the current one, nothing else.
    let cached = sorted(s.list(&dir, Freshness::Cached).await?);
    let note = if cached == first {
        "the second cached list came from the cache"
    } else if cached == current {
        "the second cached list was current"
    } else {
        return Err(Fail(format!(
            "cached list after a change: {cached:?}, neither {first:?} nor {current:?}"
        )));
    };
    for k in ["b", "c", "sub/c"] {
        s.delete(&format!("{dir}/{k}")).await?;
    }
    Ok(note.to_string())
}

// ---- blobs --------------------------------------------------------------------------------------

pub(super) async fn blob_put_read_ranges<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    // Small enough to be read at once, and large enough to be streamed (filesystem: 64 KiB).
    let small = cx.content(1, 10);
    let large = cx.content(2, 200 * 1024 + 3);
    let absent = sha256(&cx.content(3, 10));
    for data in [&small, &large] {
        let d = sha256(data);
        s.blob_put(&d, Bytes::copy_from_slice(data)).await?;
        // Storing it again is harmless.
        s.blob_put(&d, Bytes::copy_from_slice(data)).await?;
        let n = data.len() as u64;
        cx.expect_blob(
            &d,
            data,
            &[
                (0, 1),
                (1, n - 2),
                (n - 1, 1),
                (n / 2, n / 3),
                (3, 0),
                (n, 0),
            ],
        )
        .await?;
    }
    ensure!(
        s.blob_size(&absent).await?.is_none(),
        "blob_size of an absent blob"
    );
    ensure!(
        cx.read_blob(&absent, 0, 1).await?.is_none(),
        "blob_read of an absent blob answered"
    );
    for data in [&small, &large] {
        s.blob_delete(&sha256(data)).await?;
    }
    Ok(String::new())
}
