//! Tool calling without provider support (`native_tool_calling: false`, agent-behaviour §3.6):
//! the tools are described in the system prompt, calls are written as
//! `<function=NAME>` / `<parameter=NAME>value</parameter>` / `</function>`, results go back as
//! user messages `EXECUTION RESULT of [tool]:\n…`, and replies are parsed back into tool calls.
//! A malformed call is a validation error the agent reports as a user message.

use serde_json::{Map, Value, json};

use crate::llm::{LlmResponse, ToolCall, pyjson};

const CONVENTION: &str = "You can call the functions below. To call one, write exactly:

<function=FUNCTION_NAME>
<parameter=PARAMETER_NAME>value</parameter>
<parameter=OTHER_PARAMETER>multi-line values
are fine too</parameter>
</function>

Rules:
* Call at most one function per message, at the end of the message, and then stop and wait for its result.
* Give every required parameter; give no parameter that is not listed.
* Results come back in a user message that starts with `EXECUTION RESULT of [FUNCTION_NAME]:`.
* When the task is done, call `finish`.";

const EXAMPLE: &str =
    "Here is an example of how to work with the functions (the task in it is not yours).

--------------------- START OF EXAMPLE ---------------------

USER: Show me which Python version is installed.

ASSISTANT: Let me check.
<function=terminal>
<parameter=command>
python3 --version
</parameter>
<parameter=security_risk>LOW</parameter>
</function>

USER: EXECUTION RESULT of [terminal]:
Python 3.12.3
[The command completed with exit code 0.]

ASSISTANT: Python 3.12.3 is installed.
<function=finish>
<parameter=message>The installed Python version is 3.12.3.</parameter>
</function>

--------------------- END OF EXAMPLE ---------------------

Do NOT assume the environment of the example. The task follows.

";

/// The functions section appended to the system prompt.
pub fn tools_description(tools: &[Value]) -> String {
    let mut out = format!("\n\n{CONVENTION}\n\nAvailable functions:\n");
    for (i, t) in tools.iter().enumerate() {
        let f = t.get("function").unwrap_or(t);
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        out.push_str(&format!(
            "\n---- BEGIN FUNCTION #{}: {name} ----\nDescription: {}\nParameters:\n",
            i + 1,
            f["description"].as_str().unwrap_or_default()
        ));
        let required: Vec<&str> = f
            .pointer("/parameters/required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let props = f
            .pointer("/parameters/properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if props.is_empty() {
            out.push_str("  none\n");
        }
        for (j, (p, spec)) in props.iter().enumerate() {
            let ty = spec.get("type").and_then(Value::as_str).unwrap_or("string");
            let req = if required.contains(&p.as_str()) {
                "required"
            } else {
                "optional"
            };
            out.push_str(&format!(
                "  ({}) {p} ({ty}, {req}): {}",
                j + 1,
                spec.get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ));
            if let Some(e) = spec.get("enum").and_then(Value::as_array) {
                let allowed: Vec<String> = e
                    .iter()
                    .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
                    .collect();
                out.push_str(&format!(" Allowed values: [{}]", allowed.join(", ")));
            }
            out.push('\n');
        }
        out.push_str(&format!("---- END FUNCTION #{} ----\n", i + 1));
    }
    out
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Renders a tool call the way the model is asked to write them.
fn render_call(name: &str, arguments: &str) -> String {
    let mut out = format!("<function={name}>\n");
    if let Ok(Value::Object(args)) = serde_json::from_str::<Value>(arguments) {
        for (k, v) in args {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.push_str(&format!("<parameter={k}>{v}</parameter>\n"));
        }
    }
    out.push_str("</function>");
    out
}

/// Rewrites Chat Completions messages for a model without native tool calling.
pub fn convert_messages(messages: &[Value], tools: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut example_added = false;
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" => out.push(json!({"role": "system", "content": format!("{}{}", text_of(content), tools_description(tools))})),
            "assistant" => {
                let mut text = text_of(content);
                for tc in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let name = tc.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
                    let args = tc.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                    if !text.is_empty() {
                        text.push_str("\n\n");
                    }
                    text.push_str(&render_call(name, args));
                }
                out.push(json!({"role": "assistant", "content": text}));
            }
            "tool" => {
                let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
                out.push(json!({"role": "user", "content": format!("EXECUTION RESULT of [{name}]:\n{}", text_of(content))}));
            }
            _ => {
                let mut msg = m.clone();
                if !example_added {
                    example_added = true;
                    msg["content"] = json!(format!("{EXAMPLE}{}", text_of(content)));
                } else {
                    msg["content"] = json!(text_of(content));
                }
                out.push(msg);
            }
        }
    }
    out
}

/// Turns a value written between parameter tags into JSON of the schema's type.
fn typed(name: &str, raw: &str, spec: &Value) -> Result<Value, String> {
    let raw = raw.strip_prefix('\n').unwrap_or(raw);
    let raw = raw.strip_suffix('\n').unwrap_or(raw);
    match spec.get("type").and_then(Value::as_str) {
        Some("integer") => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("Parameter '{name}' is expected to be an integer.")),
        Some("number") => raw
            .trim()
            .parse::<f64>()
            .map(Value::from)
            .map_err(|_| format!("Parameter '{name}' is expected to be a number.")),
        Some("boolean") => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(json!(true)),
            "false" => Ok(json!(false)),
            _ => Err(format!("Parameter '{name}' is expected to be a boolean.")),
        },
        Some("array") | Some("object") => serde_json::from_str(raw.trim()).map_err(|_| {
            format!(
                "Parameter '{name}' is expected to be valid JSON ({}).",
                spec["type"].as_str().unwrap_or("array")
            )
        }),
        _ => Ok(json!(raw)),
    }
    .and_then(|v| match spec.get("enum").and_then(Value::as_array) {
        Some(allowed) if !allowed.contains(&v) => Err(format!(
            "Parameter '{name}' is expected to be one of {}.",
            pyjson::repr(&Value::Array(allowed.clone()))
        )),
        _ => Ok(v),
    })
}

fn python_set(items: &[&str]) -> String {
    format!(
        "{{{}}}",
        items
            .iter()
            .map(|i| pyjson::repr_str(i))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Parses the function call out of a text reply. `Ok(None)`: no call (a plain answer).
/// `Err(text)`: a malformed call (the text goes back to the model as a user message).
pub fn parse_reply(resp: &LlmResponse, tools: &[Value]) -> Result<Option<LlmResponse>, String> {
    let Some(content) = resp.content.as_deref() else {
        return Ok(None);
    };
    let Some(start) = content.find("<function=") else {
        return Ok(None);
    };
    let after = &content[start + "<function=".len()..];
    let name_end = after.find('>').ok_or_else(|| {
        "Malformed function call: missing '>' after the function name.".to_string()
    })?;
    let name = after[..name_end].trim().to_string();
    let body_all = &after[name_end + 1..];
    let body = match body_all.find("</function") {
        Some(e) => &body_all[..e],
        None => body_all,
    };
    let Some(tool) = tools
        .iter()
        .map(|t| t.get("function").unwrap_or(t))
        .find(|f| f.get("name").and_then(Value::as_str) == Some(name.as_str()))
    else {
        let names: Vec<&str> = tools
            .iter()
            .filter_map(|t| {
                t.get("function")
                    .unwrap_or(t)
                    .get("name")
                    .and_then(Value::as_str)
            })
            .collect();
        return Err(format!(
            "Function '{name}' not found in available tools: {}",
            pyjson::repr(&json!(names))
        ));
    };
    let props = tool
        .pointer("/parameters/properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let required: Vec<&str> = tool
        .pointer("/parameters/required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let allowed: Vec<&str> = props.keys().map(String::as_str).collect();
    let mut args = Map::new();
    let mut rest = body;
    while let Some(p) = rest.find("<parameter=") {
        let after = &rest[p + "<parameter=".len()..];
        let Some(name_end) = after.find('>') else {
            break;
        };
        let pname = after[..name_end].trim().to_string();
        let value_all = &after[name_end + 1..];
        let (value, next) = match value_all.find("</parameter>") {
            Some(e) => (&value_all[..e], &value_all[e + "</parameter>".len()..]),
            None => (value_all, ""),
        };
        if !allowed.contains(&pname.as_str()) {
            return Err(format!(
                "Parameter '{pname}' is not allowed for function '{name}'. Allowed parameters: {}",
                python_set(&allowed)
            ));
        }
        let v = typed(&pname, value, &props[&pname])?;
        args.insert(pname, v);
        rest = next;
    }
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|r| !args.contains_key(*r))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "Missing required parameters for function '{name}': {}",
            python_set(&missing)
        ));
    }
    let thought = content[..start].trim().to_string();
    let mut out = resp.clone();
    out.content = if thought.is_empty() {
        None
    } else {
        Some(thought)
    };
    out.tool_calls = vec![ToolCall {
        id: format!("toolu_{}", uuid::Uuid::new_v4().simple()),
        name,
        arguments: pyjson::dumps(&Value::Object(args)),
        origin: "completion",
    }];
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::{ToolKind, spec};

    fn tools() -> Vec<Value> {
        [ToolKind::Terminal, ToolKind::Finish, ToolKind::Think]
            .into_iter()
            .map(|k| spec::definition(k, "/w", false))
            .collect()
    }

    fn reply(text: &str) -> LlmResponse {
        LlmResponse {
            id: "r".into(),
            content: Some(text.into()),
            ..LlmResponse::default()
        }
    }

    #[test]
    fn parses_calls_and_reports_bad_ones() {
        let parsed = parse_reply(&reply("I'll think first.\n<function=think>\n<parameter=thought>hmm</parameter>\n</function>"), &tools()).unwrap().unwrap();
        assert_eq!(parsed.content.as_deref(), Some("I'll think first."));
        assert_eq!(parsed.tool_calls[0].name, "think");
        assert_eq!(parsed.tool_calls[0].arguments, "{\"thought\": \"hmm\"}");
        let parsed = parse_reply(&reply("<function=terminal>\n<parameter=command>\nls -la\n</parameter>\n<parameter=timeout>5</parameter>\n<parameter=security_risk>LOW</parameter>\n</function"), &tools()).unwrap().unwrap();
        assert_eq!(
            parsed.tool_calls[0].arguments,
            "{\"command\": \"ls -la\", \"timeout\": 5.0, \"security_risk\": \"LOW\"}"
        );
        assert_eq!(parsed.content, None);
        assert_eq!(
            parse_reply(
                &reply("<function=finish>\n<parameter=bogus>x</parameter>\n</function>"),
                &tools()
            )
            .unwrap_err(),
            "Parameter 'bogus' is not allowed for function 'finish'. Allowed parameters: {'message'}"
        );
        assert_eq!(
            parse_reply(&reply("<function=finish>\n</function>"), &tools()).unwrap_err(),
            "Missing required parameters for function 'finish': {'message'}"
        );
        assert!(
            parse_reply(&reply("<function=nope>\n</function>"), &tools())
                .unwrap_err()
                .starts_with("Function 'nope' not found")
        );
        assert_eq!(parse_reply(&reply("just text"), &tools()).unwrap(), None);
    }

    #[test]
    fn converts_history() {
        let msgs = vec![
            json!({"content": [{"type": "text", "text": "SYS"}], "role": "system"}),
            json!({"content": [{"type": "text", "text": "task"}], "role": "user"}),
            json!({"content": [{"type": "text", "text": "I'll think first."}], "role": "assistant", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "think", "arguments": "{\"thought\": \"hmm\"}"}}]}),
            json!({"content": [{"type": "text", "text": "Your thought has been logged."}], "role": "tool", "tool_call_id": "t1", "name": "think"}),
            json!({"content": [{"type": "text", "text": "Parameter 'bogus' is not allowed"}], "role": "user"}),
        ];
        let out = convert_messages(&msgs, &tools());
        assert!(
            out[0]["content"].as_str().unwrap().starts_with("SYS\n\n")
                && out[0]["content"]
                    .as_str()
                    .unwrap()
                    .contains("---- BEGIN FUNCTION #1: terminal ----")
        );
        assert!(
            out[1]["content"]
                .as_str()
                .unwrap()
                .starts_with("Here is an example")
                && out[1]["content"].as_str().unwrap().ends_with("task")
        );
        assert_eq!(
            out[2],
            json!({"role": "assistant", "content": "I'll think first.\n\n<function=think>\n<parameter=thought>hmm</parameter>\n</function>"})
        );
        assert_eq!(
            out[3],
            json!({"role": "user", "content": "EXECUTION RESULT of [think]:\nYour thought has been logged."})
        );
        assert_eq!(out[4]["content"], "Parameter 'bogus' is not allowed");
    }
}
