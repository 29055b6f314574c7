//! `/v2/<name>/referrers/<digest>`: the referrers of a manifest as an OCI image index,
//! optionally filtered by `artifactType`.

use http::header::HeaderValue;
use http::{Response, StatusCode};

use super::response::{json, query, Result, OCI_FILTERS_APPLIED};
use super::{Ctx, Registry};
use crate::body::Body;
use crate::digest::Digest;
use crate::manifest::OCI_INDEX;
use crate::names::Name;
use crate::storage::Storage;

impl<S: Storage> Registry<S> {
    pub(crate) async fn referrers(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
        digest: &str,
    ) -> Result<Response<Body>> {
        let subject = Digest::parse(digest)?;
        let q = query(cx.req);
        let filter = q.get("artifactType");
        let mut manifests = self.store.referrers(name, &subject).await?;
        if let Some(f) = filter {
            manifests.retain(|d| d.artifact_type.as_ref() == Some(f));
        }
        let mut resp = json(
            StatusCode::OK,
            OCI_INDEX,
            &serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests }),
        )?;
        if filter.is_some() {
            resp.headers_mut().insert(
                OCI_FILTERS_APPLIED,
                HeaderValue::from_static("artifactType"),
            );
        }
        Ok(resp)
    }
}
