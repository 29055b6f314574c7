//! The web UI's static files (`www/`), embedded in the build so every adapter serves the same
//! UI at `/` with no file access. The UI itself only reads the registry's API.

/// A static file of the UI: its content type and bytes.
pub struct Asset {
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// The file served for `path` (the part after `/`), if any. `""` is the index page.
pub fn asset(path: &str) -> Option<Asset> {
    let (content_type, bytes): (&str, &[u8]) = match path {
        "" | "index.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../www/index.html"),
        ),
        "app.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../www/app.js"),
        ),
        "api.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../www/api.js"),
        ),
        "style.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../www/style.css"),
        ),
        "favicon.svg" => ("image/svg+xml", include_bytes!("../www/favicon.svg")),
        _ => return None,
    };
    Some(Asset {
        content_type,
        bytes,
    })
}
