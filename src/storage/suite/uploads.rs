//! Checks of upload data: writing, reading back, committing, discarding, listing.

use super::*;

// ---- uploads ------------------------------------------------------------------------------------

pub(super) async fn upload_small<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let id = crate::upload::new_upload_id();
    let data = cx.content(10, 300 * 1024 + 1);
    let d = sha256(&data);
    let backend = cx
        .upload(&id, &data, &[100 * 1024, 150 * 1024], 7_000)
        .await?;
    let read = collect(Body::Stream(
        s.upload_read(&id, data.len() as u64, backend.as_deref())
            .await?,
    ))
    .await?;
    ensure!(
        read == data,
        "upload_read: {} bytes, not those written",
        read.len()
    );
    s.upload_commit(&id, &d, data.len() as u64, backend.as_deref())
        .await?;
    let n = data.len() as u64;
    cx.expect_blob(&d, &data, &[(0, 10), (100 * 1024 - 5, 10), (n - 10, 10)])
        .await?;
    let left = cx.upload_ids().await?;
    ensure!(
        !left.iter().any(|u| u.id == id),
        "list_upload_data still lists a committed upload"
    );
    s.blob_delete(&d).await?;
    Ok(String::new())
}

pub(super) async fn upload_large<S: Storage + Inspect + ?Sized>(
    cx: &Cx<'_, S>,
    declare: Declare,
) -> Outcome {
    let s = cx.s;
    let id = crate::upload::new_upload_id();
    // Over three parts; requests that end inside a part, cross parts, and fill exactly up to one.
    let len = 3 * PART + 123_457;
    let data = cx.content(20, len);
    let d = sha256(&data);
    // Requests of every kind: inside a part, up to its end exactly, across a part, a single
    // byte, none, and one that completes two parts at once.
    let requests = [
        3 * 1024 * 1024 + 17,
        PART - (3 * 1024 * 1024 + 17),
        1000,
        0,
        1,
        2 * PART - 500,
    ];
    let backend = cx
        .upload_declaring(&id, &data, &requests, 1024 * 1024 + 5, declare)
        .await?;
    s.upload_commit(&id, &d, len as u64, backend.as_deref())
        .await?;
    let (p, n) = (PART as u64, len as u64);
    cx.expect_blob(
        &d,
        &data,
        &[
            (0, 1),
            (p - 10, 20),
            (2 * p - 1, 2),
            (p, p),
            (n - 1, 1),
            (5, n - 5),
        ],
    )
    .await?;
    let left = cx.upload_ids().await?;
    ensure!(
        !left.iter().any(|u| u.id == id),
        "list_upload_data still lists a committed upload"
    );
    s.blob_delete(&d).await?;
    Ok(String::new())
}

pub(super) async fn upload_read_then_commit<S: Storage + Inspect + ?Sized>(
    cx: &Cx<'_, S>,
) -> Outcome {
    // The core reads an upload back (to hash it with another algorithm) just before committing.
    let s = cx.s;
    let id = crate::upload::new_upload_id();
    let len = PART + 4097;
    let data = cx.content(30, len);
    let d = sha256(&data);
    let backend = cx.upload(&id, &data, &[PART / 2], 2 * 1024 * 1024).await?;
    let prefix = collect(Body::Stream(
        s.upload_read(&id, 1000, backend.as_deref()).await?,
    ))
    .await?;
    ensure!(
        prefix == data[..1000],
        "upload_read of a prefix: {} bytes differ",
        prefix.len()
    );
    let all = collect(Body::Stream(
        s.upload_read(&id, len as u64, backend.as_deref()).await?,
    ))
    .await?;
    ensure!(
        all == data,
        "upload_read of all: {} bytes differ",
        all.len()
    );
    s.upload_commit(&id, &d, len as u64, backend.as_deref())
        .await?;
    cx.expect_blob(&d, &data, &[(PART as u64 - 1, 2)]).await?;
    s.blob_delete(&d).await?;
    Ok(String::new())
}

pub(super) async fn upload_discards_unsaved<S: Storage + Inspect + ?Sized>(
    cx: &Cx<'_, S>,
) -> Outcome {
    // A request whose state the session never saved (it failed, or lost a race) is not part of
    // the upload: the next request appends at the saved offset, with the saved state.
    let s = cx.s;
    let id = crate::upload::new_upload_id();
    let first = cx.content(40, 70_000);
    let lost = cx.content(41, PART + 50_000);
    let second = cx.content(42, 30_000);
    let saved = cx.upload(&id, &first, &[], 64 * 1024).await?;
    let mut w = s.upload_writer(&id, 70_000, saved.as_deref()).await?;
    write_chunks(&mut *w, &lost, 1024 * 1024).await?;
    let _unsaved = w.finish().await?;
    let mut w = s.upload_writer(&id, 70_000, saved.as_deref()).await?;
    write_chunks(&mut *w, &second, 4096).await?;
    let backend = w.finish().await?;
    let data = [first, second].concat();
    let d = sha256(&data);
    s.upload_commit(&id, &d, data.len() as u64, backend.as_deref())
        .await?;
    cx.expect_blob(&d, &data, &[(69_990, 20)]).await?;
    s.blob_delete(&d).await?;
    // The lost request's bytes may stay until the upload is deleted (the session's expiry).
    s.upload_delete(&id, backend.as_deref()).await?;
    Ok(String::new())
}

pub(super) async fn upload_commit_existing<S: Storage + Inspect + ?Sized>(
    cx: &Cx<'_, S>,
) -> Outcome {
    let s = cx.s;
    let mut notes = Vec::new();
    for (i, len) in [(0u32, 5_000usize), (1, PART + 10)] {
        let data = cx.content(50 + i, len);
        let d = sha256(&data);
        let first = crate::upload::new_upload_id();
        let backend = cx.upload(&first, &data, &[], 1024 * 1024).await?;
        s.upload_commit(&first, &d, len as u64, backend.as_deref())
            .await?;
        let before = cx.keys().await?;
        // The same content again: committing it is success, and keeps one copy.
        let again = crate::upload::new_upload_id();
        let backend = cx.upload(&again, &data, &[], 1024 * 1024).await?;
        s.upload_commit(&again, &d, len as u64, backend.as_deref())
            .await?;
        cx.expect_blob(&d, &data, &[]).await?;
        let left = cx.upload_ids().await?;
        ensure!(
            !left.iter().any(|u| u.id == again || u.id == first),
            "list_upload_data lists a committed upload ({len} bytes)"
        );
        let after = cx.keys().await?;
        ensure!(
            before == after,
            "committing stored content ({len} bytes) changed what is stored: {}",
            diff(&before, &after)
        );
        s.blob_delete(&d).await?;
        notes.push(format!("{len} bytes"));
    }
    Ok(notes.join(", "))
}

pub(super) async fn upload_empty<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    // A session completed with no bytes: nothing was ever written for it.
    let s = cx.s;
    let id = crate::upload::new_upload_id();
    let d = sha256(b"");
    let existed = s.blob_size(&d).await?.is_some();
    s.upload_commit(&id, &d, 0, None).await?;
    cx.expect_blob(&d, b"", &[(0, 0)]).await?;
    if !existed {
        s.blob_delete(&d).await?;
    }
    Ok(String::new())
}

pub(super) async fn upload_delete<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let before = cx.keys().await?;
    let mut notes = Vec::new();
    for (i, len) in [(0u32, 60_000usize), (1, PART + 60_000)] {
        let id = crate::upload::new_upload_id();
        let data = cx.content(60 + i, len);
        let backend = cx.upload(&id, &data, &[len / 3], 512 * 1024).await?;
        s.upload_delete(&id, backend.as_deref()).await?;
        let listed = cx.upload_ids().await?;
        ensure!(
            !listed.iter().any(|u| u.id == id),
            "list_upload_data lists a deleted upload ({len} bytes)"
        );
        // Deleting again, or an upload that never had data, is fine.
        s.upload_delete(&id, backend.as_deref()).await?;
        s.upload_delete(&crate::upload::new_upload_id(), None)
            .await?;
        notes.push(format!("{len} bytes"));
    }
    let after = cx.keys().await?;
    ensure!(
        before == after,
        "deleted uploads left something: {}",
        diff(&before, &after)
    );
    Ok(notes.join(", "))
}

pub(super) async fn list_upload_data<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let from = (cx.now)();
    let small = crate::upload::new_upload_id();
    let large = crate::upload::new_upload_id();
    let small_data = cx.content(70, 1234);
    let large_data = cx.content(71, PART + 1234);
    let small_backend = cx.upload(&small, &small_data, &[], 1024).await?;
    let large_backend = cx
        .upload(&large, &large_data, &[PART - 1], 1024 * 1024)
        .await?;
    let listed = cx.upload_ids().await?;
    let mut ids: Vec<&str> = listed.iter().map(|u| u.id.as_str()).collect();
    ids.sort();
    let unique = ids.windows(2).all(|w| w[0] != w[1]);
    ensure!(unique, "list_upload_data lists an upload twice: {ids:?}");
    for (id, what) in [
        (&small, "a small upload"),
        (&large, "an upload of over a part"),
    ] {
        let Some(u) = listed.iter().find(|u| &u.id == id) else {
            return Err(Fail(format!("list_upload_data lacks {what} ({id})")));
        };
        ensure!(
            cx.plausible(u.modified, from),
            "{what}: modified {} is not between {from} and now ({})",
            u.modified,
            (cx.now)()
        );
    }
    let d = sha256(&small_data);
    s.upload_commit(
        &small,
        &d,
        small_data.len() as u64,
        small_backend.as_deref(),
    )
    .await?;
    s.upload_delete(&large, large_backend.as_deref()).await?;
    let listed = cx.upload_ids().await?;
    ensure!(
        !listed.iter().any(|u| u.id == small || u.id == large),
        "list_upload_data lists a committed or deleted upload"
    );
    s.blob_delete(&d).await?;
    Ok(format!("{} upload(s) listed in all", ids.len()))
}
