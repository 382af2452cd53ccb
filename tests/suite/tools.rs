//! Tools: `GET /api/tools/`.

use serde_json::json;

use crate::common::TestServer;

#[tokio::test]
async fn lists_registered_tools_in_reference_order() {
    let s = TestServer::start();
    let (status, body) = s.get_json("/api/tools/").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!([
            "file_editor",
            "task_tracker",
            "terminal",
            "browser_tool_set",
            "glob",
            "grep",
            "planning_file_editor"
        ])
    );
    let r = reqwest::Client::new()
        .get(s.url("/api/tools/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the tools list needs the session key");
}
