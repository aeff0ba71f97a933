//! Hosting of the built web app (`web/dist`) with an SPA fallback that never hides the API.

use std::{path::PathBuf, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, Method, StatusCode},
    response::{Html, IntoResponse, Response},
};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::error::{default_detail, problem_response};

/// A built front end found at start.
#[derive(Debug)]
pub struct WebDist {
    root: PathBuf,
}

impl WebDist {
    /// The build at `root`, if it has an `index.html`.
    pub fn find(root: PathBuf) -> Option<Arc<Self>> {
        root.join("index.html")
            .is_file()
            .then(|| Arc::new(Self { root }))
    }
}

/// What the fallback serves: the web build, if any, around the paths the service owns.
#[derive(Debug, Clone)]
pub struct Site(Arc<(Option<Arc<WebDist>>, Vec<&'static str>)>);

impl Site {
    /// The web build `web`, never answering for `reserved` paths or anything under them.
    pub fn new(web: Option<Arc<WebDist>>, reserved: Vec<&'static str>) -> Self {
        Self(Arc::new((web, reserved)))
    }

    fn is_reserved(&self, path: &str) -> bool {
        self.0 .1.iter().any(|r| {
            path == *r
                || path
                    .strip_prefix(r)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

fn not_found() -> Response {
    problem_response(
        StatusCode::NOT_FOUND,
        default_detail(StatusCode::NOT_FOUND),
        None,
    )
}

/// `path` with repeated slashes collapsed and ASCII letters lower-cased: the form in which a
/// reserved path is recognised however it was spelt (`//api/…`, `/API/…`).
fn canonical(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The router's fallback: reserved paths are 404 problems, in any spelling; so is a path with
/// repeated slashes or a backslash (the file server would redirect `//host` to `//host/`, a
/// protocol-relative URL that leaves the origin). The rest is the web app, if built.
pub async fn fallback(State(site): State<Site>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if path.contains("//")
        || path.contains('\\')
        || site.is_reserved(&canonical(&path))
        || !matches!(*req.method(), Method::GET | Method::HEAD)
    {
        return not_found();
    }
    let Some(web) = site.0 .0.clone() else {
        return if path == "/" {
            Html(BUILTIN_PAGE).into_response()
        } else {
            not_found()
        };
    };
    let wants_page = !path.rsplit('/').next().unwrap_or_default().contains('.');
    let served = match ServeDir::new(&web.root).oneshot(req).await {
        Ok(res) => res.map(axum::body::Body::new),
        Err(never) => match never {},
    };
    // A redirect stays on this origin: its target is a path, never `//…` or `/\…`.
    let leaves_origin = served
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .is_some_and(|l| !l.starts_with('/') || l.starts_with("//") || l.starts_with("/\\"));
    if served.status().is_redirection() && leaves_origin {
        return not_found();
    }
    if served.status() == StatusCode::NOT_FOUND {
        return if wants_page {
            index(&web).await
        } else {
            not_found()
        };
    }
    with_cache_policy(served, &path)
}

/// `index.html` for a client-side route.
async fn index(web: &WebDist) -> Response {
    match tokio::fs::read(web.root.join("index.html")).await {
        Ok(bytes) => with_cache_policy(
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], bytes).into_response(),
            "/index.html",
        ),
        Err(e) => {
            tracing::error!(error = %e, "web build lost its index.html");
            not_found()
        }
    }
}

/// `index.html` must never be cached (it names the current assets); hashed assets are immutable.
fn with_cache_policy(mut res: Response, path: &str) -> Response {
    let policy = if path == "/" || path.ends_with("/index.html") || path.ends_with('/') {
        "no-store"
    } else if path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    res
}

const BUILTIN_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Autorisen</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto;">
<h1>Autorisen</h1>
<p>The CapeControl platform API is running. No web app build was found.</p>
<ul>
<li><a href="/docs/">API documentation</a></li>
<li><a href="/api/health">Health</a></li>
</ul>
</body>
</html>
"#;
