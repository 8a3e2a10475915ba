//! `GET /static/*`: the browser client and the demo page's stylesheet and script, compiled into
//! the binary so a deployment is one file.
//!
//! Sites load `informd.js` from informd itself, often from another origin, so every answer
//! carries `Access-Control-Allow-Origin: *` (the files are public and no credentials are
//! involved) and `Cross-Origin-Resource-Policy: cross-origin`. URLs are not versioned, so the
//! cache keeps a file 5 minutes and then revalidates it with the content-hash `ETag`: an
//! unchanged file costs a `304` with no body.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use crate::error::not_found;

/// The client as a classic script: defines `window.informd`.
const INFORMD_JS: &str = include_str!("../../static/informd.js");
/// Appended to [`INFORMD_JS`] to make `informd.mjs`: the same code as an ES module. A classic
/// script cannot contain `export`, so the module is a second URL, not a second file to keep.
const MODULE_EXPORTS: &str =
    "\nexport const connect = globalThis.informd.connect;\nexport default globalThis.informd;\n";

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const CACHE_CONTROL: &str = "public, max-age=300, must-revalidate";

/// One served file: its bytes, content type and `ETag`.
pub struct Asset {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub etag: String,
}

impl Asset {
    fn new(body: Vec<u8>, content_type: &'static str) -> Asset {
        let digest = Sha256::digest(&body);
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Asset {
            body,
            content_type,
            etag: format!("\"{hex}\""),
        }
    }
}

/// Every file under `/static/`, built once.
fn assets() -> &'static [(&'static str, Asset)] {
    static ASSETS: OnceLock<Vec<(&'static str, Asset)>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        vec![
            ("informd.js", Asset::new(INFORMD_JS.into(), JAVASCRIPT)),
            (
                "informd.mjs",
                Asset::new(format!("{INFORMD_JS}{MODULE_EXPORTS}").into(), JAVASCRIPT),
            ),
            (
                "demo.css",
                Asset::new(include_str!("../../static/demo.css").into(), CSS),
            ),
            (
                "demo.js",
                Asset::new(include_str!("../../static/demo.js").into(), JAVASCRIPT),
            ),
        ]
    })
}

/// The served file called `name`, if any (the demo page names them with their `ETag`).
pub fn asset(name: &str) -> Option<&'static Asset> {
    assets()
        .iter()
        .find(|(file, _)| *file == name)
        .map(|(_, asset)| asset)
}

/// `GET /static/{file}` (and `HEAD`): the file, or `304` when `If-None-Match` names its `ETag`.
pub async fn serve(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    let Some(asset) = asset(&file) else {
        return not_found();
    };
    let matches = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == asset.etag || tag == "*");
    let mut answer = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    answer
        .insert_header((header::ETAG, asset.etag.as_str()))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header(("Cross-Origin-Resource-Policy", "cross-origin"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if matches {
        return answer.finish();
    }
    answer
        .content_type(asset.content_type)
        .body(asset.body.as_slice())
}
