//! Checks of walking the stored blobs and deleting them.

use super::*;

// ---- walking and deleting blobs ---------------------------------------------------------------

pub(super) async fn list_blobs_paging<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let from = (cx.now)();
    let mut ours: Vec<(Digest, u64)> = Vec::new();
    for i in 0..7u32 {
        let data = cx.content(80 + i, 100 + i as usize * 1000);
        let d = sha256(&data);
        s.blob_put(&d, Bytes::from(data.clone())).await?;
        ours.push((d, data.len() as u64));
    }
    // Chunked uploads: one over a part (on R2 a record pointing at its parts), one under.
    for (i, len) in [(0u32, PART + 77), (1, 77_777)] {
        let data = cx.content(90 + i, len);
        let d = sha256(&data);
        let id = crate::upload::new_upload_id();
        let backend = cx.upload(&id, &data, &[], 1024 * 1024).await?;
        s.upload_commit(&id, &d, len as u64, backend.as_deref())
            .await?;
        ours.push((d, len as u64));
    }
    let mut pages_seen = Vec::new();
    for limit in [1, 3, 1000, 0] {
        let (all, pages) = cx.all_blobs(limit).await?;
        pages_seen.push(format!(
            "limit {limit}: {} blobs in {pages} pages",
            all.len()
        ));
        for (d, size) in &ours {
            let found: Vec<&BlobInfo> = all.iter().filter(|b| &b.digest == d).collect();
            ensure!(
                found.len() == 1,
                "list_blobs (limit {limit}) lists {d} {} times",
                found.len()
            );
            ensure!(
                found[0].size == *size,
                "list_blobs (limit {limit}): {d} has size {}, stored {size}",
                found[0].size
            );
            ensure!(
                cx.plausible(found[0].modified, from),
                "list_blobs: {d} modified {} is not between {from} and now ({})",
                found[0].modified,
                (cx.now)()
            );
        }
    }
    for (d, _) in &ours {
        s.blob_delete(d).await?;
    }
    Ok(pages_seen.join("; "))
}

pub(super) async fn blob_delete<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let data = cx.content(100, 4321);
    let d = sha256(&data);
    let other = cx.content(101, 1234);
    let o = sha256(&other);
    let before = cx.keys().await?;
    s.blob_put(&d, Bytes::from(data.clone())).await?;
    s.blob_put(&o, Bytes::from(other.clone())).await?;
    s.blob_delete(&d).await?;
    cx.expect_no_blob(&d).await?;
    let (all, _) = cx.all_blobs(1000).await?;
    ensure!(
        !all.iter().any(|b| b.digest == d),
        "list_blobs lists a deleted blob"
    );
    ensure!(
        all.iter().any(|b| b.digest == o),
        "list_blobs lacks a blob stored next to the deleted one"
    );
    cx.expect_blob(&o, &other, &[]).await?;
    // Deleting it again, or a blob never stored, is fine.
    s.blob_delete(&d).await?;
    s.blob_delete(&sha256(&cx.content(102, 1))).await?;
    // And it can be stored again.
    s.blob_put(&d, Bytes::from(data.clone())).await?;
    cx.expect_blob(&d, &data, &[]).await?;
    s.blob_delete(&d).await?;
    s.blob_delete(&o).await?;
    let after = cx.keys().await?;
    ensure!(
        before == after,
        "deleted blobs left something: {}",
        diff(&before, &after)
    );
    Ok(String::new())
}

pub(super) async fn blob_delete_chunked<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    // A blob committed from an upload: deleting it removes the upload's bytes too.
    let s = cx.s;
    let mut notes = Vec::new();
    for (i, len) in [(0u32, 2 * PART + 5), (1, 33_333)] {
        let data = cx.content(110 + i, len);
        let d = sha256(&data);
        let before = cx.keys().await?;
        let id = crate::upload::new_upload_id();
        let backend = cx.upload(&id, &data, &[len / 2 + 3], 1024 * 1024).await?;
        s.upload_commit(&id, &d, len as u64, backend.as_deref())
            .await?;
        let stored = cx.keys().await?;
        let added = stored.difference(&before).count();
        ensure!(added > 0, "a committed upload ({len} bytes) stored nothing");
        s.blob_delete(&d).await?;
        cx.expect_no_blob(&d).await?;
        let (all, _) = cx.all_blobs(1000).await?;
        ensure!(
            !all.iter().any(|b| b.digest == d),
            "list_blobs lists a deleted blob"
        );
        let after = cx.keys().await?;
        ensure!(
            before == after,
            "deleting a blob of {len} bytes committed from an upload left something: {}",
            diff(&before, &after)
        );
        s.blob_delete(&d).await?;
        notes.push(format!("{len} bytes: {added} object(s) stored, all gone"));
    }
    Ok(notes.join("; "))
}
