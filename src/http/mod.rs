//! Cross-cutting HTTP behaviour in one place: the route table used for the reference's
//! 404/405/307 answers, CORS, session-key authentication and the access log.

pub mod extractor_errors;
#[cfg(test)]
mod proptests;
pub mod validate;

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError, web};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::error::ApiError;

/// Every HTTP route of the server, as `(method, actix pattern)`. The gate answers 404/405/307 from
/// this table before authentication, as the reference's router does; `routes::configure` must
/// register exactly these (a test checks it).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/alive"),
    ("GET", "/health"),
    ("GET", "/server_info"),
    ("GET", "/"),
    ("GET", "/static/{path:.*}"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/api/conversations/search"),
    ("GET", "/api/conversations/count"),
    ("GET", "/api/conversations"),
    ("POST", "/api/conversations"),
    ("GET", "/api/conversations/{conversation_id}"),
    ("PATCH", "/api/conversations/{conversation_id}"),
    ("DELETE", "/api/conversations/{conversation_id}"),
    ("POST", "/api/conversations/{conversation_id}/run"),
    ("POST", "/api/conversations/{conversation_id}/pause"),
    ("POST", "/api/conversations/{conversation_id}/secrets"),
    (
        "POST",
        "/api/conversations/{conversation_id}/confirmation_policy",
    ),
    (
        "POST",
        "/api/conversations/{conversation_id}/security_analyzer",
    ),
    (
        "POST",
        "/api/conversations/{conversation_id}/generate_title",
    ),
    ("POST", "/api/conversations/{conversation_id}/ask_agent"),
    ("GET", "/api/conversations/{conversation_id}/events/search"),
    ("GET", "/api/conversations/{conversation_id}/events/count"),
    (
        "POST",
        "/api/conversations/{conversation_id}/events/respond_to_confirmation",
    ),
    (
        "GET",
        "/api/conversations/{conversation_id}/events/{event_id}",
    ),
    ("GET", "/api/conversations/{conversation_id}/events"),
    ("POST", "/api/conversations/{conversation_id}/events"),
    ("GET", "/api/tools/"),
    ("GET", "/api/bash/bash_events/search"),
    ("GET", "/api/bash/bash_events/"),
    ("GET", "/api/bash/bash_events/{event_id}"),
    ("DELETE", "/api/bash/bash_events"),
    ("POST", "/api/bash/start_bash_command"),
    ("POST", "/api/bash/execute_bash_command"),
    ("GET", "/api/git/changes/{path:.*}"),
    ("GET", "/api/git/diff/{path:.*}"),
    ("POST", "/api/file/upload/{path:.*}"),
    ("GET", "/api/file/download/{path:.*}"),
    ("GET", "/api/file/download-trajectory/{conversation_id}"),
    ("GET", "/api/vscode/url"),
    ("GET", "/api/vscode/status"),
    ("GET", "/api/desktop/url"),
    ("GET", "/sockets/events/{conversation_id}"),
    ("GET", "/sockets/bash-events"),
];

/// The outcome of matching a request against [`ROUTES`].
enum RouteMatch {
    Found,
    WrongMethod(Vec<&'static str>),
    Redirect(String),
    Missing,
}

/// One segment of a route pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seg {
    /// Exactly this text.
    Lit(&'static str),
    /// `{name}`: one non-empty segment (actix's default `[^/]+`).
    Param,
    /// `{name:.*}`: the rest of the path, possibly empty or with slashes (last segment only).
    Tail,
}

/// A pattern of [`ROUTES`] split at `/` (the leading `/` dropped).
struct Pattern {
    method: &'static str,
    segs: Vec<Seg>,
}

impl Pattern {
    fn parse(method: &'static str, pattern: &'static str) -> Pattern {
        let segs = pattern
            .strip_prefix('/')
            .unwrap_or(pattern)
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(inner) if inner.ends_with(":.*") => Seg::Tail,
                    Some(_) => Seg::Param,
                    None => Seg::Lit(s),
                },
            )
            .collect();
        Pattern { method, segs }
    }

    /// Same answer as actix's `ResourceDef::is_match` for these patterns, without a regex
    /// (a test compares the two).
    fn is_match(&self, path: &str) -> bool {
        let Some(mut rest) = path.strip_prefix('/') else {
            return false;
        };
        let n = self.segs.len();
        for (i, seg) in self.segs.iter().enumerate() {
            let (part, after) = match rest.split_once('/') {
                Some((p, a)) => (p, Some(a)),
                None => (rest, None),
            };
            let ok = match seg {
                Seg::Tail => return true,
                Seg::Lit(l) => part == *l,
                Seg::Param => !part.is_empty(),
            };
            match after {
                _ if !ok => return false,
                None => return i + 1 == n,
                // more segments in the path than in the pattern
                Some(_) if i + 1 == n => return false,
                Some(a) => rest = a,
            }
        }
        false
    }
}

/// [`ROUTES`] parsed once into segment patterns: matching a request is a few string
/// comparisons per route instead of a regex per dynamic route.
static COMPILED: std::sync::LazyLock<Vec<Pattern>> =
    std::sync::LazyLock::new(|| ROUTES.iter().map(|(m, p)| Pattern::parse(m, p)).collect());

/// The methods of the routes whose pattern matches `path`, in [`ROUTES`] order.
fn matching_methods(path: &str) -> Vec<&'static str> {
    COMPILED
        .iter()
        .filter(|p| p.is_match(path))
        .map(|p| p.method)
        .collect()
}

fn match_route(method: &Method, path: &str) -> RouteMatch {
    // the common case first: a route with this method matches (no allocation)
    if COMPILED
        .iter()
        .any(|p| p.method == method.as_str() && p.is_match(path))
    {
        return RouteMatch::Found;
    }
    let methods = matching_methods(path);
    if !methods.is_empty() {
        return RouteMatch::WrongMethod(methods);
    }
    let toggled = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => format!("{path}/"),
    };
    if matching_methods(&toggled)
        .iter()
        .any(|m| *m == method.as_str())
    {
        return RouteMatch::Redirect(toggled);
    }
    RouteMatch::Missing
}

/// True when `given` equals one of the configured keys. Every key is compared, each in constant
/// time over SHA-256 digests, so neither the position of the first wrong byte nor the length of
/// a key shows in the timing.
pub fn key_matches(keys: &[String], given: &str) -> bool {
    use sha2::{Digest, Sha256};
    let given = Sha256::digest(given.as_bytes());
    let mut ok = 0u8;
    for k in keys {
        ok |= Sha256::digest(k.as_bytes()).ct_eq(&given).unwrap_u8();
    }
    ok == 1
}

/// The WebSocket credential check: the `session_api_key` query parameter must match when keys
/// are configured. The `X-Session-API-Key` header is not accepted on the upgrade, as in the
/// reference (DEVIATIONS allows it, but the conformance golden `auth_websocket` expects 403).
pub fn websocket_key_ok(cfg: &Config, req: &actix_web::HttpRequest) -> bool {
    if cfg.session_api_keys.is_empty() {
        return true;
    }
    validate::QueryPairs::parse(req.query_string())
        .get("session_api_key")
        .is_some_and(|k| key_matches(&cfg.session_api_keys, k))
}

fn origin_allowed(cfg: &Config, origin: &str) -> bool {
    if cfg.allow_cors_origins.is_empty() {
        let host = origin.split("://").nth(1).unwrap_or("");
        let host = host.split('/').next().unwrap_or("");
        let host = if host.starts_with('[') {
            host
        } else {
            host.split(':').next().unwrap_or("")
        };
        return host == "localhost" || host == "127.0.0.1";
    }
    cfg.allow_cors_origins
        .iter()
        .any(|o| o == "*" || o == origin)
}

fn cors_headers(resp: &mut HttpResponse<impl MessageBody>, origin: Option<&str>, allowed: bool) {
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    if let (Some(o), true) = (origin, allowed) {
        if let Ok(v) = HeaderValue::from_str(o) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn preflight(req: &ServiceRequest, allowed: bool, origin: &str) -> HttpResponse {
    let mut b = if allowed {
        HttpResponse::Ok()
    } else {
        HttpResponse::BadRequest()
    };
    b.content_type("text/plain; charset=utf-8");
    b.insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"));
    b.insert_header((
        header::ACCESS_CONTROL_ALLOW_METHODS,
        "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT",
    ));
    b.insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
    b.insert_header((header::VARY, "Origin"));
    if let Some(h) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        b.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone()));
    }
    if allowed {
        b.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin));
        b.body("OK")
    } else {
        b.body("Disallowed CORS origin")
    }
}

/// The request gate, outermost middleware: access log, CORS, routing errors, authentication,
/// activity tracking for `idle_time`.
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_string();
    let cfg = req.app_data::<web::Data<Config>>().cloned();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let allowed = match (&cfg, &origin) {
        (Some(c), Some(o)) => origin_allowed(c, o),
        _ => false,
    };

    let early: Option<HttpResponse> = if method == Method::OPTIONS
        && origin.is_some()
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        Some(preflight(&req, allowed, origin.as_deref().unwrap_or("")))
    } else {
        match match_route(&method, &path) {
            RouteMatch::Missing => Some(ApiError::not_found().error_response()),
            RouteMatch::WrongMethod(allow) => {
                Some(ApiError::MethodNotAllowed { allow }.error_response())
            }
            RouteMatch::Redirect(to) => {
                let info = req.connection_info();
                let mut location = format!("{}://{}{}", info.scheme(), info.host(), to);
                if !req.query_string().is_empty() {
                    location.push('?');
                    location.push_str(req.query_string());
                }
                Some(ApiError::Redirect { location }.error_response())
            }
            RouteMatch::Found => {
                let needs_key = path.starts_with("/api/");
                match &cfg {
                    Some(c) if needs_key && !c.session_api_keys.is_empty() => {
                        let given = req
                            .headers()
                            .get("x-session-api-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        if given.is_empty() || !key_matches(&c.session_api_keys, given) {
                            Some(ApiError::unauthorized().error_response())
                        } else {
                            None
                        }
                    }
                    _ => None,
                }
            }
        }
    };

    let res: ServiceResponse<BoxBody> = match early {
        Some(mut resp) => {
            if method != Method::OPTIONS {
                cors_headers(&mut resp, origin.as_deref(), allowed);
            }
            req.into_response(resp)
        }
        None => {
            let mut res = next.call(req).await?.map_into_boxed_body();
            if res.status() != StatusCode::INTERNAL_SERVER_ERROR {
                cors_headers(res.response_mut(), origin.as_deref(), allowed);
            }
            res
        }
    };
    access_log(&method, &path, res.status(), started);
    Ok(res)
}

fn access_log(method: &Method, path: &str, status: StatusCode, started: Instant) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if crate::logging::json_enabled() {
        log::info!(
            target: "access",
            "{}",
            serde_json::json!({"method": method.as_str(), "path": path, "status": status.as_u16(), "duration_ms": ms})
        );
    } else {
        log::info!(target: "access", "{} {} {} {:.1}ms", method, path, status.as_u16(), ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_table_answers() {
        assert!(matches!(
            match_route(&Method::GET, "/health"),
            RouteMatch::Found
        ));
        assert!(
            matches!(match_route(&Method::PUT, "/health"), RouteMatch::WrongMethod(m) if m == vec!["GET"])
        );
        assert!(
            matches!(match_route(&Method::GET, "/api/tools"), RouteMatch::Redirect(p) if p == "/api/tools/")
        );
        assert!(matches!(
            match_route(&Method::GET, "/api/bash/bash_events"),
            RouteMatch::WrongMethod(_)
        ));
        assert!(matches!(
            match_route(&Method::GET, "/api/nope"),
            RouteMatch::Missing
        ));
        assert!(matches!(
            match_route(&Method::GET, "/api/file/download//etc/hostname"),
            RouteMatch::Found
        ));
        assert!(matches!(
            match_route(&Method::GET, "/api/conversations/x/events/y"),
            RouteMatch::Found
        ));
    }

    /// The segment matcher answers exactly as actix's `ResourceDef` on every route.
    #[test]
    fn segment_matcher_agrees_with_resource_def() {
        use actix_web::dev::ResourceDef;
        let defs: Vec<ResourceDef> = ROUTES.iter().map(|(_, p)| ResourceDef::new(*p)).collect();
        let parts = [
            "",
            "api",
            "conversations",
            "x",
            "search",
            "events",
            "static",
            "file",
            "download",
            "git",
            "changes",
            "tools",
            "bash",
            "bash_events",
            "a b",
            "%2F",
            "é",
            ".",
            "..",
        ];
        // every path of up to 5 segments over `parts` would be too many; a deterministic
        // sample of them plus the real patterns with their parameters filled or emptied
        let mut paths: Vec<String> = vec!["".into(), "/".into(), "//".into(), "///".into()];
        for (_, p) in ROUTES {
            paths.push(p.to_string());
            paths.push(
                p.replace("{conversation_id}", "abc")
                    .replace("{event_id}", "e1"),
            );
            paths.push(p.replace("{conversation_id}", "").replace("{event_id}", ""));
            paths.push(
                p.replace("{path:.*}", "")
                    .replace("{conversation_id}", "a/b"),
            );
            paths.push(p.replace("{path:.*}", "a/b/c"));
            paths.push(format!("{p}/"));
            paths.push(p.trim_end_matches('/').to_string());
            paths.push(format!("{p}/x"));
        }
        let mut seed = 7u64;
        for _ in 0..20_000 {
            let mut path = String::new();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = (seed >> 60) as usize % 6;
            for k in 0..n {
                let s = (seed >> (k * 8)) as usize % parts.len();
                path.push('/');
                path.push_str(parts[s]);
            }
            if seed & 1 == 1 {
                path.push('/');
            }
            paths.push(path);
        }
        for path in &paths {
            for (pat, def) in COMPILED.iter().zip(&defs) {
                assert_eq!(
                    pat.is_match(path),
                    def.is_match(path),
                    "{path:?} against {:?}",
                    def.pattern()
                );
            }
        }
    }

    #[test]
    fn keys_and_origins() {
        let keys = vec!["a".to_string(), "bb".to_string()];
        assert!(key_matches(&keys, "bb"));
        assert!(!key_matches(&keys, "b"));
        let cfg = Config::default();
        assert!(origin_allowed(&cfg, "http://localhost:3000"));
        assert!(origin_allowed(&cfg, "https://127.0.0.1"));
        assert!(!origin_allowed(&cfg, "http://evil.com"));
        let cfg = Config {
            allow_cors_origins: vec!["http://a.b".into()],
            ..Config::default()
        };
        assert!(!origin_allowed(&cfg, "http://localhost:3000"));
        assert!(origin_allowed(&cfg, "http://a.b"));
    }
}
