//! `/token`: the token endpoint of the token auth protocol. `GET /token?service=..&scope=..`
//! with Basic credentials (or none, for an anonymous token), or the OAuth2 password grant as a
//! form `POST`.

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use super::response::{json, Result};
use super::{client, Ctx, Registry};
use crate::auth::{presented, Presented};
use crate::body::Body;
use crate::error::{Error, ErrorCode};
use crate::storage::Storage;

/// Largest token request body.
const MAX_FORM: usize = 64 * 1024;

impl<S: Storage> Registry<S> {
    pub(super) async fn token(&self, cx: &mut Ctx<'_>) -> Result<Response<Body>> {
        // Scopes repeat, so the query is read as pairs, not as a map.
        let mut pairs: Vec<(String, String)> = cx
            .req
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        // Basic credentials, or none (a Bearer token does not get another token).
        let mut credentials = match presented(&cx.req.headers) {
            Presented::Basic(Some(c)) => Some(c),
            Presented::Basic(None) | Presented::Malformed => {
                return Err(self
                    .access
                    .token_unauthorized()
                    .with_message("malformed Basic credentials"))
            }
            Presented::Nothing | Presented::Bearer(_) => None,
        };
        if cx.req.method == Method::POST {
            let form = std::mem::replace(cx.body, Body::Empty)
                .collect_limited(MAX_FORM)
                .await
                .map_err(|_| {
                    Error::new(ErrorCode::Unsupported).with_status(StatusCode::BAD_REQUEST)
                })?
                .ok_or_else(|| {
                    Error::new(ErrorCode::SizeInvalid)
                        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                        .with_message("token request too large")
                })?;
            let form: Vec<(String, String)> = form_urlencoded::parse(&form).into_owned().collect();
            let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if field("grant_type").as_deref() != Some("password") {
                return Err(Error::new(ErrorCode::Unsupported)
                    .with_status(StatusCode::BAD_REQUEST)
                    .with_message("unsupported grant_type (only password)"));
            }
            credentials = Some((
                field("username").unwrap_or_default(),
                field("password").unwrap_or_default(),
            ));
            pairs.extend(form);
        }
        let scopes: Vec<String> = pairs
            .into_iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v)
            .collect();
        if let Some((user, _)) = &credentials {
            cx.principal = crate::auth::Principal::User(user.clone());
        }
        let issued = self
            .access
            .issue_token(credentials, &scopes, client(cx.req), self.clock.now_ms())
            .await;
        if issued.is_err() {
            cx.principal = crate::auth::Principal::Anonymous;
        }
        let mut resp = json(StatusCode::OK, "application/json", &issued?)?;
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }
}
