//! Stuck detection (agent-behaviour §6), checked at the top of each run iteration: repeated
//! action/observation, repeated action/error, monologue, alternating patterns, over the events
//! after the last user message.

use serde_json::Value;

fn kind(e: &Value) -> &str {
    e.get("kind").and_then(Value::as_str).unwrap_or_default()
}

const OBSERVATION_KINDS: &[&str] = &[
    "ObservationEvent",
    "AgentErrorEvent",
    "UserRejectObservation",
];

/// Equality ignoring ids, timestamps, tool-call ids and response ids.
fn same(a: &Value, b: &Value) -> bool {
    if kind(a) != kind(b) || a.get("source") != b.get("source") {
        return false;
    }
    let eq = |k: &str| a.get(k) == b.get(k);
    match kind(a) {
        "ActionEvent" => eq("thought") && eq("action") && eq("tool_name"),
        "ObservationEvent" => eq("observation") && eq("tool_name"),
        "AgentErrorEvent" => eq("error"),
        "UserRejectObservation" => eq("rejection_reason") && eq("tool_name"),
        "MessageEvent" => eq("llm_message"),
        _ => a == b,
    }
}

fn all_same(items: &[&Value]) -> bool {
    items.windows(2).all(|w| same(w[0], w[1]))
}

/// The last `n` events of the given kinds, newest last; fewer if the window has fewer.
fn last_of<'a>(window: &'a [Value], kinds: &[&str], n: usize) -> Vec<&'a Value> {
    let mut out: Vec<&Value> = window
        .iter()
        .rev()
        .filter(|e| kinds.contains(&kind(e)))
        .take(n)
        .collect();
    out.reverse();
    out
}

/// Whether the log shows the agent stuck.
pub fn is_stuck(events: &[Value]) -> bool {
    let Some(last_user) = events.iter().rposition(|e| {
        kind(e) == "MessageEvent" && e.get("source").and_then(Value::as_str) == Some("user")
    }) else {
        return false;
    };
    let window = &events[last_user + 1..];
    if window.len() < 3 {
        return false;
    }
    // 1. Four identical actions with four identical observations.
    let actions = last_of(window, &["ActionEvent"], 4);
    let observations = last_of(window, OBSERVATION_KINDS, 4);
    if actions.len() == 4
        && observations.len() == 4
        && all_same(&actions)
        && all_same(&observations)
    {
        return true;
    }
    // 2. Three identical actions, each answered by an error.
    let actions = last_of(window, &["ActionEvent"], 3);
    let observations = last_of(window, OBSERVATION_KINDS, 3);
    if actions.len() == 3
        && observations.len() == 3
        && all_same(&actions)
        && observations.iter().all(|o| kind(o) == "AgentErrorEvent")
    {
        return true;
    }
    // 3. The agent talking to itself: three agent messages in a row at the end.
    let mut monologue = 0;
    for e in window.iter().rev() {
        match kind(e) {
            "MessageEvent" if e.get("source").and_then(Value::as_str) == Some("agent") => {
                monologue += 1
            }
            "CondensationSummaryEvent" => {}
            _ => break,
        }
    }
    if monologue >= 3 {
        return true;
    }
    // 4. A, B, A, B, A, B.
    if window.len() >= 6 {
        let actions = last_of(window, &["ActionEvent"], 6);
        let observations = last_of(window, &["ObservationEvent", "AgentErrorEvent"], 6);
        let alternates = |v: &[&Value]| {
            v.len() == 6
                && same(v[0], v[2])
                && same(v[2], v[4])
                && same(v[1], v[3])
                && same(v[3], v[5])
        };
        if alternates(&actions) && alternates(&observations) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({"kind": "MessageEvent", "source": "user", "llm_message": {"role": "user"}})
    }

    fn action(cmd: &str, id: usize) -> Value {
        json!({"kind": "ActionEvent", "id": format!("a{id}"), "source": "agent", "thought": [], "tool_name": "terminal",
            "tool_call_id": format!("c{id}"), "action": {"kind": "TerminalAction", "command": cmd}})
    }

    fn obs(out: &str, id: usize) -> Value {
        json!({"kind": "ObservationEvent", "id": format!("o{id}"), "source": "environment", "tool_name": "terminal",
            "tool_call_id": format!("c{id}"), "observation": {"kind": "TerminalObservation", "content": [out]}})
    }

    fn error(text: &str, id: usize) -> Value {
        json!({"kind": "AgentErrorEvent", "id": format!("e{id}"), "source": "agent", "tool_name": "terminal", "tool_call_id": format!("c{id}"), "error": text})
    }

    fn stats() -> Value {
        json!({"kind": "ConversationStateUpdateEvent", "source": "environment", "key": "stats"})
    }

    #[test]
    fn repeated_pairs() {
        let mut log = vec![user()];
        for i in 0..3 {
            log.extend([stats(), action("echo same", i), obs("same", i)]);
        }
        assert!(!is_stuck(&log));
        log.extend([stats(), action("echo same", 9), obs("same", 9)]);
        assert!(is_stuck(&log));
        log.push(user());
        assert!(!is_stuck(&log), "a user message resets the window");
    }

    #[test]
    fn repeated_errors_even_with_different_texts() {
        let null_action = |i: usize| json!({"kind": "ActionEvent", "id": format!("a{i}"), "source": "agent", "thought": [], "tool_name": "terminal", "action": null});
        let mut log = vec![user()];
        for i in 0..2 {
            log.extend([null_action(i), error(&format!("bad {i}"), i)]);
        }
        assert!(!is_stuck(&log));
        log.extend([null_action(5), error("bad 5", 5)]);
        assert!(is_stuck(&log));
    }

    #[test]
    fn monologue_blocked_by_stats_updates() {
        let msg = json!({"kind": "MessageEvent", "source": "agent", "llm_message": {"role": "assistant", "content": []}});
        let plain = vec![user(), msg.clone(), msg.clone(), msg.clone()];
        assert!(is_stuck(&plain));
        let server = vec![
            user(),
            stats(),
            msg.clone(),
            stats(),
            msg.clone(),
            stats(),
            msg,
        ];
        assert!(!is_stuck(&server));
    }

    #[test]
    fn alternating() {
        let mut log = vec![user()];
        for i in 0..3 {
            log.extend([
                action("echo A", 2 * i),
                obs("A", 2 * i),
                action("echo B", 2 * i + 1),
                obs("B", 2 * i + 1),
            ]);
        }
        assert!(is_stuck(&log));
        let mut log = vec![user()];
        for i in 0..2 {
            log.extend([
                action("echo A", 2 * i),
                obs("A", 2 * i),
                action("echo B", 2 * i + 1),
                obs("B", 2 * i + 1),
            ]);
        }
        assert!(!is_stuck(&log));
        assert!(
            !is_stuck(&[action("x", 1), obs("x", 1)]),
            "no user message: never stuck"
        );
    }
}
