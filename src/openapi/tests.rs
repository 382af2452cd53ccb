use std::collections::BTreeSet;

use serde_json::json;

use super::conform::violations;
use super::*;
use crate::model::events::KIND_PATHS;

fn all_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            if let Some(name) = schemas::ref_name(v) {
                out.insert(name.to_string());
            }
            o.values().for_each(|c| all_refs(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| all_refs(c, out)),
        _ => {}
    }
}

fn component(doc: &Value, name: &str) -> Value {
    doc["components"]["schemas"][name].clone()
}

fn one_of_refs(schema: &Value) -> BTreeSet<String> {
    schema["oneOf"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| schemas::ref_name(m).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_route_is_documented_exactly_once() {
    let missing: Vec<_> = ROUTES
        .iter()
        .filter(|(m, p)| operations::find(m, p).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "routes without an entry in openapi::operations::OPERATIONS: {missing:?}"
    );
    let stale: Vec<_> = operations::OPERATIONS
        .iter()
        .filter(|o| !ROUTES.contains(&(o.method, o.pattern)))
        .map(|o| (o.method, o.pattern))
        .collect();
    assert!(
        stale.is_empty(),
        "documented routes that do not exist: {stale:?}"
    );
    let mut seen = BTreeSet::new();
    for o in operations::OPERATIONS {
        assert!(
            seen.insert((o.method, o.pattern)),
            "documented twice: {} {}",
            o.method,
            o.pattern
        );
    }
    assert_eq!(seen.len(), ROUTES.len());
}

#[test]
fn the_document_is_well_formed() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "OpenHands Agent Server");
    assert!(doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    // every route is there, with its method
    for (method, pattern) in ROUTES {
        let (template, names) = path_template(pattern);
        let op = &paths[&template][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {template} missing");
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(declared, wanted, "path parameters of {method} {template}");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
    }
    let count: usize = paths
        .values()
        .map(|p| p.as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(count, ROUTES.len());
    // operation ids are unique
    let mut ids = BTreeSet::new();
    for item in paths.values() {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            let id = op["operationId"].as_str().expect("operationId").to_string();
            assert!(ids.insert(id.clone()), "duplicate operationId {id}");
        }
    }
    // every reference resolves
    let mut refs = BTreeSet::new();
    all_refs(&doc, &mut refs);
    let dangling: Vec<_> = refs.iter().filter(|r| !schemas.contains_key(*r)).collect();
    assert!(dangling.is_empty(), "unresolved $ref: {dangling:?}");
    // and no schemars numbering of clashing names slipped in
    let numbered: Vec<_> = schemas
        .keys()
        .filter(|k| k.ends_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert!(numbered.is_empty(), "clashing schema names: {numbered:?}");
    // built once: the served text is this document
    let served: Value = serde_json::from_str(&DOCUMENT).expect("DOCUMENT is JSON");
    assert_eq!(served, doc);
}

#[test]
fn tagged_unions_name_their_variants() {
    let doc = document();
    // no `kind`-tagged variant is left inline
    fn inline_variants(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::Array(members)) = o.get("oneOf") {
                    for m in members {
                        if let Some(k) = variant_kind(m) {
                            out.push(k.to_string());
                        }
                    }
                }
                o.values().for_each(|c| inline_variants(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| inline_variants(c, out)),
            _ => {}
        }
    }
    let mut left = Vec::new();
    inline_variants(&doc, &mut left);
    assert!(left.is_empty(), "inline variants: {left:?}");
    assert_eq!(
        one_of_refs(&component(&doc, "ConfirmationPolicyBase")),
        ["AlwaysConfirm", "ConfirmRisky", "NeverConfirm"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        one_of_refs(&component(&doc, "CondenserBase")),
        [
            "LLMSummarizingCondenser",
            "NoOpCondenser",
            "PipelineCondenser-Output"
        ]
        .map(String::from)
        .into()
    );
    let policy = component(&doc, "ConfirmationPolicyBase");
    assert_eq!(policy["discriminator"]["propertyName"], "kind");
    assert_eq!(
        component(&doc, "ConfirmRisky")["properties"]["kind"]["const"],
        "ConfirmRisky"
    );
}

#[test]
fn the_event_union_covers_every_event_kind() {
    let doc = document();
    let kinds: BTreeSet<String> = KIND_PATHS.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(one_of_refs(&component(&doc, "Event")), kinds);
    for kind in &kinds {
        assert_eq!(
            component(&doc, kind)["properties"]["kind"]["const"],
            json!(kind),
            "{kind} has its kind tag"
        );
    }
    // actions and observations: one per tool this server runs
    let tools = schemas::tool_kinds();
    let actions = one_of_refs(&component(&doc, "Action"));
    let observations = one_of_refs(&component(&doc, "Observation"));
    assert_eq!(actions.len(), tools.len());
    assert_eq!(observations.len(), tools.len());
    for t in tools {
        assert!(actions.contains(t.action_kind()));
    }
    let terminal = component(&doc, "TerminalAction");
    assert!(terminal["properties"]["command"].is_object());
    assert!(terminal["properties"].get("security_risk").is_none());
}

#[test]
fn path_templates_and_operation_ids_follow_fastapi() {
    assert_eq!(
        path_template("/api/file/download/{path:.*}"),
        (
            "/api/file/download/{path}".to_string(),
            vec!["path".to_string()]
        )
    );
    assert_eq!(
        path_template("/api/conversations/{conversation_id}/events/{event_id}").1,
        vec!["conversation_id", "event_id"]
    );
    assert_eq!(path_template("/alive"), ("/alive".to_string(), vec![]));
    assert_eq!(
        operation_id("Get Server Info", "/", "GET"),
        "get_server_info__get"
    );
    assert_eq!(
        operation_id("Git Changes", "/api/git/changes/{path}", "GET"),
        "git_changes_api_git_changes__path__get"
    );
    assert_eq!(
        operation_id(
            "Search Conversation Events",
            "/api/conversations/{conversation_id}/events/search",
            "GET"
        ),
        "search_conversation_events_api_conversations__conversation_id__events_search_get"
    );
}

#[test]
fn descriptions_leave_out_internal_notes() {
    let doc = document();
    let text = doc.to_string();
    for needle in [".md", "DEVIATIONS", "golden"] {
        assert!(!text.contains(needle), "description mentions {needle}");
    }
}

/// Serialized values of the model hold to the schemas the document gives them.
#[test]
fn model_values_match_their_schemas() {
    use crate::bash::model::{BashCommand, BashOutput, ExecuteBashRequest};
    use crate::model::api::{ServerInfo, Success};
    use crate::model::{Agent, ConversationInfo, ConversationState, Event};

    let doc = document();
    let check = |name: &str, v: Value| {
        let errs = violations(&doc, &schemas::reference(name), &v);
        assert!(errs.is_empty(), "{name}: {errs:#?}\n{v}");
    };
    check("Success", serde_json::to_value(Success::OK).unwrap());
    check(
        "ServerInfo",
        serde_json::to_value(ServerInfo {
            uptime: 1.0,
            idle_time: 0.0,
            title: "t",
            version: "v",
            docs: "/docs",
            redoc: "/redoc",
        })
        .unwrap(),
    );
    let command = BashCommand::new(ExecuteBashRequest {
        command: "ls".into(),
        cwd: None,
        timeout: 5,
    });
    check("BashCommand", serde_json::to_value(&command).unwrap());
    let output = BashOutput::new(command.id, 0, Some(0), Some("x".into()), None);
    check("BashOutput", serde_json::to_value(&output).unwrap());
    check(
        "BashEventBase",
        serde_json::to_value(crate::bash::model::BashEvent::Output(output)).unwrap(),
    );

    let agent: Agent = serde_json::from_value(json!({
        "llm": {"model": "openai/m", "api_key": "k", "usage_id": "agent"},
        "tools": [{"name": "terminal"}],
        "condenser": {"kind": "LLMSummarizingCondenser", "llm": {"model": "m", "usage_id": "c"}},
        "agent_context": {"skills": [{"name": "s", "content": "c", "trigger": {"type": "keyword", "keywords": ["k"]}}]},
    }))
    .unwrap();
    check("Agent-Output", serde_json::to_value(&agent).unwrap());
    let state: ConversationState = serde_json::from_value(json!({
        "id": "d7f069d4-a362-414f-9837-0c5693d7a3e9",
        "agent": agent,
        "workspace": {"kind": "LocalWorkspace", "working_dir": "/tmp/w"},
        "confirmation_policy": {"kind": "ConfirmRisky"},
        "security_analyzer": {"kind": "LLMSecurityAnalyzer"},
        "secret_registry": {"secret_sources": {
            "A": {"kind": "StaticSecret", "value": "v"},
            "B": {"kind": "LookupSecret", "url": "http://x", "headers": {"X-Key": "k"}},
        }},
    }))
    .unwrap();
    let metrics = json!({"model_name": "m", "accumulated_cost": 0.0, "max_budget_per_task": null,
        "accumulated_token_usage": {"model": "m", "prompt_tokens": 0, "completion_tokens": 0,
        "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0,
        "context_window": 0, "per_turn_token": 0, "response_id": ""}});
    let info = ConversationInfo {
        state: &state,
        title: Some("t"),
        metrics: Some(&metrics),
        created_at: "2026-01-01T00:00:00Z",
        updated_at: "2026-01-01T00:00:00Z",
    };
    check("ConversationInfo", serde_json::to_value(&info).unwrap());

    for event in [
        json!({"kind": "MessageEvent", "id": "1", "timestamp": "2026-01-01T00:00:00", "source": "user",
            "llm_message": {"role": "user", "content": [{"type": "text", "text": "hi"}]}}),
        json!({"kind": "ActionEvent", "id": "2", "timestamp": "2026-01-01T00:00:00", "source": "agent",
            "thought": [], "action": {"kind": "TerminalAction", "command": "ls", "is_input": false, "timeout": null, "reset": false},
            "tool_name": "terminal", "tool_call_id": "c", "llm_response_id": "r",
            "tool_call": {"id": "c", "name": "terminal", "arguments": "{}", "origin": "completion"}}),
        json!({"kind": "ObservationEvent", "id": "3", "timestamp": "2026-01-01T00:00:00", "source": "environment",
            "tool_name": "terminal", "tool_call_id": "c", "action_id": "2",
            "observation": {"kind": "TerminalObservation", "content": [{"type": "text", "text": "x"}],
                "is_error": false, "command": "ls", "exit_code": 0, "timeout": false,
                "metadata": {"exit_code": 0, "pid": 1, "username": null, "hostname": null,
                    "working_dir": null, "py_interpreter_path": null, "prefix": "", "suffix": ""},
                "full_output_save_dir": null}}),
        json!({"kind": "ConversationStateUpdateEvent", "id": "4", "timestamp": "2026-01-01T00:00:00",
            "source": "environment", "key": "execution_status", "value": "running"}),
    ] {
        let parsed: Event = serde_json::from_value(event).unwrap();
        let api: Value = serde_json::from_str(&parsed.to_api_json()).unwrap();
        check("Event", api);
    }
}
