//! Foundation: health routes, auth, error shapes, routing errors, CORS.

use serde_json::json;

use crate::common::{KEY, TestServer};

#[tokio::test]
async fn health_routes_are_open() {
    let s = TestServer::start();
    let c = reqwest::Client::new();
    let r = c.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "\"OK\"");
    let r = c.get(s.url("/alive")).send().await.unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"status":"ok"})
    );
    let r = c
        .get(s.url("/server_info"))
        .header("X-Session-API-Key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["title"], "OpenHands Agent Server");
    assert!(v["uptime"].is_f64() && v["idle_time"].is_f64());
}

#[tokio::test]
async fn routing_errors_have_reference_shapes() {
    let s = TestServer::start();
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c.get(s.url("/no/such/route")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"detail":"Not Found"})
    );
    let r = c.put(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"detail":"Method Not Allowed"})
    );
    let r = c
        .get(s.url("/api/tools"))
        .header("X-Session-API-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"],
        format!("{}/api/tools/", s.base).as_str()
    );
}

#[tokio::test]
async fn api_requires_session_key() {
    let s = TestServer::start();
    let c = reqwest::Client::new();
    for key in [None, Some(""), Some("wrong")] {
        let mut req = c.get(s.url("/api/conversations/count"));
        if let Some(k) = key {
            req = req.header("X-Session-API-Key", k);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "key {key:?}");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap(),
            json!({"detail":"Unauthorized"})
        );
    }
    let r = c
        .get(s.url(&format!("/api/conversations/count?session_api_key={KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "query key is not accepted on REST");
}

#[tokio::test]
async fn cors_preflight_and_simple_requests() {
    let s = TestServer::start();
    let c = reqwest::Client::new();
    let r = c
        .request(reqwest::Method::OPTIONS, s.url("/api/conversations/count"))
        .header("Origin", "http://localhost:3000")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "x-session-api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(
        r.headers()["access-control-allow-headers"],
        "x-session-api-key"
    );
    let r = c
        .request(reqwest::Method::OPTIONS, s.url("/health"))
        .header("Origin", "http://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "Disallowed CORS origin");
    let r = c
        .get(s.url("/health"))
        .header("Origin", "http://127.0.0.1:9")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://127.0.0.1:9"
    );
}
