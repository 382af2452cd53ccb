//! Property tests of the wire models against hostile JSON: any value, and valid requests with
//! one part replaced or removed, go through every request validator and the event model without
//! a panic; a refusal is a 422 (or the one 500 the reference defines, `'kind'`); an accepted
//! event serializes, and its API JSON reads back to the same JSON.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::model::{Event, requests};

/// Field names and kinds of the wire models, so generated JSON reaches the deeper checks.
const VOCABULARY: &[&str] = &[
    "kind",
    "agent",
    "llm",
    "model",
    "api_key",
    "base_url",
    "tools",
    "name",
    "params",
    "workspace",
    "working_dir",
    "content",
    "type",
    "text",
    "image_urls",
    "role",
    "run",
    "secrets",
    "value",
    "url",
    "headers",
    "policy",
    "threshold",
    "security_analyzer",
    "accept",
    "reason",
    "title",
    "question",
    "max_length",
    "conversation_id",
    "initial_message",
    "max_iterations",
    "stuck_detection",
    "confirmation_policy",
    "condenser",
    "id",
    "timestamp",
    "source",
    "llm_message",
    "tool_calls",
    "action",
    "observation",
    "key",
    "Agent",
    "StaticSecret",
    "LookupSecret",
    "NeverConfirm",
    "AlwaysConfirm",
    "ConfirmRisky",
    "LLMSecurityAnalyzer",
    "MessageEvent",
    "ActionEvent",
    "ObservationEvent",
    "ConversationStateUpdateEvent",
    "user",
    "agent",
    "system",
    "image",
    "HIGH",
    "LocalWorkspace",
    "terminal",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(VOCABULARY).prop_map(str::to_string),
        ".{0,12}",
        Just(String::new()),
        Just("\u{0}\u{FFFD}\u{1F600}\\\"".to_string()),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        (-2i64..300).prop_map(Value::from),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((arb_string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Valid bodies of every request validator.
fn seeds() -> Vec<Value> {
    let llm = json!({"model": "openai/gpt-4o", "api_key": "sk-x", "base_url": "http://127.0.0.1:9/v1", "usage_id": "agent", "num_retries": 2});
    vec![
        json!({
            "agent": {"kind": "Agent", "llm": llm, "tools": [{"name": "terminal", "params": {}}, {"name": "file_editor"}],
                      "condenser": {"kind": "LLMSummarizingCondenser", "llm": llm, "max_size": 80, "keep_first": 4}},
            "workspace": {"kind": "LocalWorkspace", "working_dir": "/tmp/w"},
            "conversation_id": "5b7a8c1e2f3d4a5b9c8d7e6f5a4b3c2d",
            "confirmation_policy": {"kind": "ConfirmRisky", "threshold": "HIGH"},
            "initial_message": {"role": "user", "content": [{"type": "text", "text": "hi"}], "run": true},
            "max_iterations": 10,
            "stuck_detection": false,
            "secrets": {"A": {"kind": "StaticSecret", "value": "v"},
                        "B": {"kind": "LookupSecret", "url": "http://x", "headers": {"X-Key": "k"}}},
        }),
        json!({"role": "user", "content": [{"type": "text", "text": "hi"},
               {"type": "image", "image_urls": ["data:image/png;base64,AAAA"]}], "run": false}),
        json!({"policy": {"kind": "ConfirmRisky", "threshold": "MEDIUM", "confirm_unknown": true}}),
        json!({"security_analyzer": {"kind": "LLMSecurityAnalyzer"}}),
        json!({"secrets": {"A": "plain", "B": {"value": "v"}, "C": {"kind": "LookupSecret", "url": "http://x"}}}),
        json!({"accept": false, "reason": "no"}),
        json!({"title": "a title"}),
        json!({"max_length": 20, "llm": llm}),
        json!({"question": "why?"}),
    ]
}

/// Events as the server writes them (API form).
fn event_seeds() -> Vec<Value> {
    let message = json!({"role": "user", "content": [{"cache_prompt": false, "type": "text", "text": "hi"}],
        "cache_enabled": false, "vision_enabled": false, "function_calling_enabled": false,
        "tool_calls": null, "tool_call_id": null, "name": null, "force_string_serializer": false,
        "send_reasoning_content": false, "reasoning_content": null, "thinking_blocks": [],
        "responses_reasoning_item": null});
    vec![
        json!({"kind": "MessageEvent", "id": "61e9af88-d310-4ab7-abf7-74cf61c5dbe2",
               "timestamp": "2026-11-28T13:10:29.502560", "source": "user", "llm_message": message,
               "llm_response_id": null, "activated_skills": [], "extended_content": [], "sender": null}),
        json!({"kind": "ConversationStateUpdateEvent", "id": "a5d3c1f0-3a4b-4c5d-8e9f-0a1b2c3d4e5f",
               "timestamp": "2026-11-28T13:10:29.502560", "source": "environment",
               "key": "execution_status", "value": "running"}),
        json!({"kind": "PauseEvent", "id": "b5d3c1f0-3a4b-4c5d-8e9f-0a1b2c3d4e5f",
               "timestamp": "2026-11-28T13:10:29.502560", "source": "user"}),
        json!({"kind": "AgentErrorEvent", "id": "c5d3c1f0-3a4b-4c5d-8e9f-0a1b2c3d4e5f",
               "timestamp": "2026-11-28T13:10:29.502560", "source": "agent",
               "tool_name": "terminal", "tool_call_id": "call_1", "error": "bad"}),
    ]
}

/// `v` with the node reached by `path` (child indexes, modulo the node's size) replaced by
/// `with`, or removed when `with` is `None`.
fn mutate(v: &mut Value, path: &[usize], with: Option<Value>) {
    let Some((&step, rest)) = path.split_first() else {
        if let Some(w) = with {
            *v = w;
        }
        return;
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            let key = m.keys().nth(step % m.len()).cloned().unwrap_or_default();
            if rest.is_empty() && with.is_none() {
                m.shift_remove(&key);
            } else if let Some(child) = m.get_mut(&key) {
                mutate(child, rest, with);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = step % a.len();
            if rest.is_empty() && with.is_none() {
                a.remove(i);
            } else {
                mutate(&mut a[i], rest, with);
            }
        }
        other => {
            if let Some(w) = with {
                *other = w;
            }
        }
    }
}

/// A refusal must be a 422, or the reference's own 500 for a missing `kind`.
fn check_refusal(what: &str, e: &ApiError) -> Result<(), TestCaseError> {
    match e {
        ApiError::Validation(items) => {
            prop_assert!(!items.is_empty(), "{what}: empty 422");
            for item in items {
                prop_assert!(
                    item.loc.first() == Some(&json!("body")),
                    "{what}: loc {:?}",
                    item.loc
                );
            }
            Ok(())
        }
        ApiError::Server { exception, .. } if exception == "'kind'" => Ok(()),
        other => Err(TestCaseError::fail(format!(
            "{what}: refused with {other:?}"
        ))),
    }
}

fn run_validators(body: &Value) -> Result<(), TestCaseError> {
    macro_rules! each {
        ($($f:ident),*) => {$(
            if let Err(e) = requests::$f(body) {
                check_refusal(stringify!($f), &e)?;
            }
        )*};
    }
    each!(
        start_conversation,
        send_message,
        update_title,
        set_policy,
        set_analyzer,
        update_secrets,
        respond_to_confirmation,
        generate_title,
        ask_agent
    );
    Ok(())
}

fn check_event(v: Value) -> Result<(), TestCaseError> {
    if let Ok(ev) = serde_json::from_value::<Event>(v) {
        let api = ev.to_api_json();
        prop_assert!(ev.to_disk_json().is_ok());
        let back: Event = serde_json::from_str(&api)
            .map_err(|e| TestCaseError::fail(format!("API JSON does not read back: {e}: {api}")))?;
        prop_assert_eq!(back.to_api_json(), api);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_json_is_validated_without_panic(body in arb_json()) {
        run_validators(&body)?;
        check_event(body)?;
    }

    #[test]
    fn mutated_requests_are_validated_without_panic(
        seed in 0usize..9,
        path in prop::collection::vec(any::<usize>(), 0..6),
        with in prop::option::of(arb_json()),
    ) {
        let mut body = seeds()[seed].clone();
        mutate(&mut body, &path, with);
        run_validators(&body)?;
    }

    #[test]
    fn mutated_events_read_and_write_back(
        seed in 0usize..4,
        path in prop::collection::vec(any::<usize>(), 0..5),
        with in prop::option::of(arb_json()),
    ) {
        let mut ev = event_seeds()[seed].clone();
        mutate(&mut ev, &path, with);
        check_event(ev)?;
    }
}

#[test]
fn the_seeds_are_valid() {
    for (i, s) in seeds().iter().enumerate() {
        let ok = match i {
            0 => requests::start_conversation(s).is_ok(),
            1 => requests::send_message(s).is_ok(),
            2 => requests::set_policy(s).is_ok(),
            3 => requests::set_analyzer(s).is_ok(),
            4 => requests::update_secrets(s).is_ok(),
            5 => requests::respond_to_confirmation(s).is_ok(),
            6 => requests::update_title(s).is_ok(),
            7 => requests::generate_title(s).is_ok(),
            _ => requests::ask_agent(s).is_ok(),
        };
        assert!(ok, "seed {i} is refused: {s}");
    }
    for e in event_seeds() {
        let ev: Event = serde_json::from_value(e.clone()).unwrap();
        assert!(!matches!(ev, Event::Unknown(_)), "{e}");
    }
}
