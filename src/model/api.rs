//! Small response bodies that routes serialize directly (API.md §0.4, §1, §2.13, §2.14, §8). They
//! derive `JsonSchema` too, so `/openapi.json` describes exactly what the handlers send.

use schemars::JsonSchema;
use serde::Serialize;

/// `{"success": bool}`: the answer of most state-changing routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Success {
    /// False only when PATCH names an unknown conversation.
    pub success: bool,
}

impl Success {
    pub const OK: Success = Success { success: true };
}

/// What `/server_info` (and `/` without static files) reports.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ServerInfo {
    /// Whole seconds since start, as a float.
    pub uptime: f64,
    /// Whole seconds since the last conversation event (or start), as a float.
    pub idle_time: f64,
    pub title: &'static str,
    /// The version of the reference server this one is compatible with.
    pub version: &'static str,
    /// Where the interactive API page is.
    pub docs: &'static str,
    /// Where the alternative API page is.
    pub redoc: &'static str,
}

/// `{"title": str}` from `generate_title`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct GenerateTitleResponse {
    pub title: String,
}

/// `{"response": str}` from `ask_agent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct AskAgentResponse {
    pub response: String,
}

/// `{"url": str | null}` from `/api/vscode/url`: null while no connection token exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(rename = "VSCodeUrlResponse")]
pub struct VscodeUrlResponse {
    pub url: Option<String>,
}

/// `{"url": str | null}` from `/api/desktop/url`: null while the desktop does not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct DesktopUrlResponse {
    pub url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_keep_the_reference_shapes() {
        assert_eq!(
            serde_json::to_string(&Success::OK).unwrap(),
            r#"{"success":true}"#
        );
        let info = ServerInfo {
            uptime: 26.0,
            idle_time: 3.0,
            title: "OpenHands Agent Server",
            version: "1.4.1",
            docs: "/docs",
            redoc: "/redoc",
        };
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"uptime":26.0,"idle_time":3.0,"title":"OpenHands Agent Server","version":"1.4.1","docs":"/docs","redoc":"/redoc"}"#
        );
        assert_eq!(
            serde_json::to_value(VscodeUrlResponse { url: None }).unwrap(),
            json!({"url": null})
        );
    }
}
