//! The two side calls (agent-behaviour §8, API.md §2.13–2.14): `generate_title` and
//! `ask_agent`. Prompts in this server's own words.

use serde_json::{Value, json};

use super::messages;
use crate::llm::{LlmRequest, LlmResponse};

/// Longest message text put into the title prompt.
const TITLE_INPUT_CHARS: usize = 1000;

const TITLE_SYSTEM: &str = "You write short, descriptive titles for conversations between a user and OpenHands, an AI \
agent that solves tasks on a computer with a terminal, a file editor and a browser. You receive the user's first \
message (possibly cut short). Reply with the title only: no quotes, no explanation, nothing else.";

const TITLE_EMOJIS: &str = "💄 frontend: user interface and styles\n- 👔 backend: business logic\n- ✅ test: tests\n\
- 👷 devops: CI and build system\n- 🚀 deployment: deploying\n- 📦️ dependencies: packages and dependencies\n\
- 🗃️ database: database changes\n- 🔧 chores: configuration and maintenance\n- ✨ features: new features\n\
- 🐛 bugfix: bug fixes\n- ⚡️ performance: performance improvements\n- 🔒️ security: security fixes\n\
- 📝 documentation: documentation\n- ♻️ refactor: refactoring";

/// The text of the first user message that has text (parts joined by spaces).
pub fn first_user_text(events: &[Value]) -> Option<String> {
    events
        .iter()
        .filter(|e| {
            e.get("kind").and_then(Value::as_str) == Some("MessageEvent")
                && e.get("source").and_then(Value::as_str) == Some("user")
        })
        .find_map(|e| {
            let texts: Vec<&str> = e
                .pointer("/llm_message/content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            let joined = texts.join(" ");
            if joined.trim().is_empty() {
                None
            } else {
                Some(joined)
            }
        })
}

/// The title request for `message` (no tools).
pub fn title_request(message: &str, max_length: usize) -> LlmRequest {
    let message = if message.chars().count() > TITLE_INPUT_CHARS {
        format!(
            "{}...(truncated)",
            message.chars().take(TITLE_INPUT_CHARS).collect::<String>()
        )
    } else {
        message.to_string()
    };
    let user = format!(
        "Write a title of at most {max_length} characters for a conversation that begins with this message:\n\n{message}\n\n\
Start the title with exactly ONE emoji, the one that fits best, chosen from this list:\n- {TITLE_EMOJIS}"
    );
    LlmRequest {
        messages: vec![
            json!({"content": [{"type": "text", "text": TITLE_SYSTEM}], "role": "system"}),
            json!({"content": [{"type": "text", "text": user}], "role": "user"}),
        ],
        tools: Vec::new(),
    }
}

/// Cuts `text` (stripped) to `max_length` characters, ending with `...` when cut.
pub fn shorten(text: &str, max_length: usize) -> String {
    let t = text.trim();
    if t.chars().count() <= max_length {
        return t.to_string();
    }
    format!(
        "{}...",
        t.chars()
            .take(max_length.saturating_sub(3))
            .collect::<String>()
    )
}

/// The title from the LLM reply, or the message itself when the reply is missing or empty.
pub fn title_from_reply(reply: Option<&LlmResponse>, message: &str, max_length: usize) -> String {
    match reply
        .and_then(|r| r.content.as_deref())
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(t) => shorten(t, max_length),
        None => shorten(message, max_length),
    }
}

/// The ask_agent request: the conversation's view (pending actions hidden), then the question;
/// the tools of the conversation are sent so the history stays valid.
pub fn ask_agent_request(events: &[Value], question: &str) -> LlmRequest {
    let mut messages = messages::build_messages(events);
    let text = format!(
        "<QUESTION>\nAnswer the following question using what you know from this conversation so far.\n\n## Question\n{question}\n\n\
<IMPORTANT>\nDo not call any tool: just answer the question in plain text.\n</IMPORTANT>\n</QUESTION>"
    );
    messages.push(json!({"content": [{"type": "text", "text": text}], "role": "user"}));
    LlmRequest {
        messages,
        tools: messages::tools_from_log(events),
    }
}

/// The ask_agent answer: the reply's text, or `None` (HTTP 500) when there is none.
pub fn ask_agent_answer(reply: &LlmResponse) -> Option<String> {
    reply.content.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::events;
    use crate::tools::text_part;

    #[test]
    fn titles() {
        let log = vec![
            events::system_prompt_event("S", &[]),
            events::user_message_event(vec![], vec![], vec![]),
            events::user_message_event(
                vec![text_part("Please refactor"), text_part("the parser module")],
                vec![],
                vec![],
            ),
        ];
        assert_eq!(
            first_user_text(&log).as_deref(),
            Some("Please refactor the parser module")
        );
        assert_eq!(first_user_text(&log[..2]), None);
        let req = title_request("Please refactor the parser module", 30);
        assert!(req.tools.is_empty());
        assert_eq!(req.messages.len(), 2);
        assert_eq!(req.messages[0]["role"], "system");
        assert!(
            req.messages[1]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("at most 30 characters")
        );
        let reply = LlmResponse {
            content: Some("Refactoring The Parser Module For Speed And Clarity".into()),
            ..LlmResponse::default()
        };
        assert_eq!(
            title_from_reply(Some(&reply), "m", 50),
            "Refactoring The Parser Module For Speed And Cla..."
        );
        assert_eq!(title_from_reply(Some(&reply), "m", 10), "Refacto...");
        assert_eq!(
            title_from_reply(None, "SCENARIO message text", 10),
            "SCENARI..."
        );
        let empty = LlmResponse {
            content: Some("  ".into()),
            ..LlmResponse::default()
        };
        assert_eq!(title_from_reply(Some(&empty), "short", 10), "short");
        let long = "x".repeat(1500);
        assert!(
            title_request(&long, 50).messages[1]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("...(truncated)")
        );
    }

    #[test]
    fn ask_agent() {
        let tools = vec![json!({"type": "function", "function": {"name": "finish"}})];
        let log = vec![
            events::system_prompt_event("S", &tools),
            events::user_message_event(vec![text_part("hi")], vec![], vec![]),
        ];
        let req = ask_agent_request(&log, "What is 2+2?");
        assert_eq!(req.tools, tools);
        assert_eq!(req.messages.len(), 3);
        assert_eq!(req.messages[2]["role"], "user");
        assert!(
            req.messages[2]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("## Question\nWhat is 2+2?")
        );
        assert_eq!(
            ask_agent_answer(&LlmResponse {
                content: Some("4".into()),
                ..LlmResponse::default()
            })
            .as_deref(),
            Some("4")
        );
    }
}
