//! One agent step end to end (agent-behaviour §2.4), written against a small host interface so
//! the Conversation actor (or a test) supplies the log, appends events and accounts LLM usage.
//! Status changes are left to the caller, from the returned [`StepEnd`].

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;

use super::{Agent, Condense, events, step};
use crate::llm::LlmResponse;
use crate::tools::ToolRuntime;

/// What a step needs from its conversation.
pub trait StepHost: Send {
    /// The current event log, in append order (shared: a host can keep it between steps).
    fn events(&mut self) -> impl Future<Output = Arc<Vec<Value>>> + Send;
    /// Appends (and publishes) one event.
    fn emit(&mut self, event: Value) -> impl Future<Output = ()> + Send;
    /// A successful LLM response of the LLM registered under `usage_id`: account it and publish
    /// the `stats` state update (before the events derived from the response).
    fn llm_usage(
        &mut self,
        usage_id: &str,
        response: &LlmResponse,
    ) -> impl Future<Output = ()> + Send;
    /// Everything emitted so far must now be persisted and published. A host may batch what
    /// `emit`/`llm_usage` hand it until this is called: the driver calls it before running any
    /// tool, after each observation, and when the step ends.
    fn flush(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The conversation settings a step reads.
#[derive(Debug, Clone, Default)]
pub struct StepSettings {
    /// `confirmation_policy` JSON (`{"kind":"NeverConfirm"}`, …).
    pub confirmation_policy: Value,
    /// `security_analyzer` JSON or `None`/`null`.
    pub security_analyzer: Option<Value>,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StepEnd {
    /// Keep looping (status stays `running`).
    Continue,
    /// A finish observation or a non-blank text reply: status `finished`.
    Finished,
    /// The batch needs confirmation: status `waiting_for_confirmation`.
    WaitingForConfirmation,
    /// The step failed: status `error` and a ConversationErrorEvent with these fields.
    Error { code: String, detail: String },
}

/// Executes pending or just-created actions in order, one observation each.
async fn execute<H: StepHost>(runtime: &ToolRuntime, actions: &[Value], host: &mut H) -> StepEnd {
    let mut finished = false;
    host.flush().await;
    for a in actions {
        let observation = runtime
            .execute(a.get("action").unwrap_or(&Value::Null))
            .await;
        host.emit(events::observation_event(a, observation)).await;
        host.flush().await;
        finished |= step::is_finish(a);
    }
    if finished {
        StepEnd::Finished
    } else {
        StepEnd::Continue
    }
}

/// Runs one step: pending actions, else condensation, else one LLM call and its actions.
pub async fn run_step<H: StepHost>(
    agent: &Agent,
    runtime: &ToolRuntime,
    settings: &StepSettings,
    host: &mut H,
) -> StepEnd {
    let end = step_body(agent, runtime, settings, host).await;
    host.flush().await;
    end
}

async fn step_body<H: StepHost>(
    agent: &Agent,
    runtime: &ToolRuntime,
    settings: &StepSettings,
    host: &mut H,
) -> StepEnd {
    let log = host.events().await;
    let pending = step::pending_actions(&log);
    if !pending.is_empty() {
        return execute(runtime, &pending, host).await;
    }
    if let (Some(Condense::Summarize(req)), Some(llm)) =
        (agent.condensation(&log), agent.condenser_llm())
    {
        return match llm.complete(&req.request).await {
            Ok(resp) => {
                host.llm_usage(&llm.config().usage_id, &resp).await;
                host.emit(req.into_event(&resp)).await;
                StepEnd::Continue
            }
            Err(e) => StepEnd::Error {
                code: e.code,
                detail: e.detail,
            },
        };
    }
    let request = agent.next_request(&log);
    let resp = match agent.llm().complete(&request).await {
        Ok(r) => r,
        Err(e) if e.is_context_window() && agent.handles_condensation_requests() => {
            host.emit(events::condensation_request_event()).await;
            return StepEnd::Continue;
        }
        Err(e) => {
            return StepEnd::Error {
                code: e.code,
                detail: e.detail,
            };
        }
    };
    host.llm_usage(&agent.llm().config().usage_id, &resp).await;
    let analyzer = settings.security_analyzer.as_ref().filter(|a| !a.is_null());
    let out = agent.handle_reply(&resp, analyzer.is_some());
    for e in out.events {
        host.emit(e).await;
    }
    if out.finished {
        return StepEnd::Finished;
    }
    if out.actions.is_empty() {
        return StepEnd::Continue;
    }
    if step::requires_confirmation(&settings.confirmation_policy, analyzer, &out.actions) {
        return StepEnd::WaitingForConfirmation;
    }
    execute(runtime, &out.actions, host).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Metrics;
    use crate::llm::fake::{FakeServer, Reply};
    use crate::tools::{RuntimeConfig, text_part};
    use serde_json::json;

    /// A Vec-backed host.
    struct Log {
        events: Vec<Value>,
        metrics: Metrics,
    }

    impl StepHost for Log {
        async fn events(&mut self) -> Arc<Vec<Value>> {
            Arc::new(self.events.clone())
        }
        async fn emit(&mut self, event: Value) {
            self.events.push(event);
        }
        async fn llm_usage(&mut self, usage_id: &str, response: &LlmResponse) {
            self.metrics.record(response);
            let stats = crate::llm::metrics::stats_json([(usage_id, &self.metrics)], false);
            self.events.push(json!({"kind": "ConversationStateUpdateEvent", "source": "environment", "key": "stats", "value": stats}));
        }
    }

    fn chat(id: &str, content: Value, calls: Value) -> Reply {
        let mut message = json!({"role": "assistant", "content": content});
        if calls.as_array().is_some_and(|c| !c.is_empty()) {
            message["tool_calls"] = calls;
        }
        Reply::json(
            200,
            &json!({"id": id, "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
        )
    }

    fn call(id: &str, name: &str, args: &str) -> Value {
        json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
    }

    fn kinds(log: &[Value]) -> Vec<String> {
        log.iter()
            .filter(|e| e["key"] != "stats")
            .map(|e| match e["kind"].as_str().unwrap() {
                "ActionEvent" | "ObservationEvent" => format!(
                    "{}:{}",
                    e["kind"].as_str().unwrap(),
                    e["tool_name"].as_str().unwrap()
                ),
                k => k.to_string(),
            })
            .collect()
    }

    async fn setup(
        replies: Vec<Reply>,
        policy: Value,
    ) -> (
        FakeServer,
        Agent,
        ToolRuntime,
        Log,
        StepSettings,
        tempfile::TempDir,
    ) {
        let fake = FakeServer::start(replies).await;
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        let agent_json = json!({"kind": "Agent", "llm": {"model": "openai/fake-model", "base_url": format!("{}/v1", fake.base),
            "api_key": "ohconf-x", "usage_id": "agent", "num_retries": 0}, "tools": [{"name": "terminal"}, {"name": "file_editor"}, {"name": "task_tracker"}]});
        let agent = Agent::new(&agent_json, ws.to_str().unwrap()).unwrap();
        let runtime = ToolRuntime::new(
            &RuntimeConfig {
                working_dir: ws.clone(),
                conversation_dir: Some(ws.join("conv")),
            },
            agent.tools(),
        );
        let (user, _) = agent.user_message_event(vec![text_part("contract check")], &[]);
        let log = Log {
            events: vec![agent.system_prompt_event(), user],
            metrics: Metrics::new("openai/fake-model"),
        };
        (
            fake,
            agent,
            runtime,
            log,
            StepSettings {
                confirmation_policy: policy,
                security_analyzer: None,
            },
            dir,
        )
    }

    #[tokio::test]
    async fn terminal_then_finish_like_the_reference() {
        let replies = vec![
            chat(
                "chatcmpl-0",
                json!("thinking"),
                json!([call(
                    "call_0_0",
                    "terminal",
                    "{\"command\": \"echo contract\", \"security_risk\": \"LOW\"}"
                )]),
            ),
            chat(
                "chatcmpl-1",
                Value::Null,
                json!([call("call_1_0", "finish", "{\"message\": \"ok\"}")]),
            ),
        ];
        let (fake, agent, runtime, mut log, settings, dir) =
            setup(replies, json!({"kind": "NeverConfirm"})).await;
        assert_eq!(
            run_step(&agent, &runtime, &settings, &mut log).await,
            StepEnd::Continue
        );
        assert_eq!(
            run_step(&agent, &runtime, &settings, &mut log).await,
            StepEnd::Finished
        );
        assert_eq!(
            kinds(&log.events),
            [
                "SystemPromptEvent",
                "MessageEvent",
                "ActionEvent:terminal",
                "ObservationEvent:terminal",
                "ActionEvent:finish",
                "ObservationEvent:finish"
            ]
        );
        assert_eq!(log.events.iter().filter(|e| e["key"] == "stats").count(), 2);
        assert_eq!(log.metrics.response_latencies.len(), 2);
        let reqs = fake.received();
        assert_eq!(reqs.len(), 2);
        let first = &reqs[0].body;
        let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["model", "messages", "tools", "temperature", "top_p"]);
        assert_eq!(first["model"], "fake-model");
        assert_eq!(reqs[0].path, "/v1/chat/completions");
        assert_eq!(reqs[0].header("authorization"), Some("Bearer ohconf-x"));
        assert_eq!(first["tools"], log.events[0]["tools"]);
        assert_eq!(
            first["messages"][0]["content"][0]["text"],
            log.events[0]["system_prompt"]["text"]
        );
        assert_eq!(
            first["messages"][1],
            json!({"content": [{"type": "text", "text": "contract check"}], "role": "user"})
        );
        let ws = dir.path().canonicalize().unwrap().display().to_string();
        let tail = &reqs[1].body["messages"].as_array().unwrap()[2..];
        assert_eq!(
            tail[0],
            json!({"content": [{"type": "text", "text": "thinking"}], "role": "assistant",
            "tool_calls": [call("call_0_0", "terminal", "{\"command\": \"echo contract\", \"security_risk\": \"LOW\"}")]})
        );
        let text = tail[1]["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with(&format!("contract\n[The command completed with exit code 0.]\n[Current working directory: {ws}]\n[Python interpreter: ")));
        assert!(text.ends_with("]\n[Command finished with exit code 0]"));
        assert_eq!(tail[1]["role"], "tool");
        assert_eq!(tail[1]["tool_call_id"], "call_0_0");
        assert_eq!(tail[1]["name"], "terminal");
        runtime.close().await;
    }

    #[tokio::test]
    async fn confirmation_then_pending_execution_and_text_reply() {
        let replies = vec![
            chat(
                "c0",
                Value::Null,
                json!([
                    call("call_0_0", "think", "{\"thought\": \"t\"}"),
                    call(
                        "call_0_1",
                        "task_tracker",
                        "{\"command\": \"view\", \"security_risk\": \"LOW\"}"
                    )
                ]),
            ),
            chat("c1", json!("All done."), json!([])),
        ];
        let (fake, agent, runtime, mut log, settings, _dir) =
            setup(replies, json!({"kind": "AlwaysConfirm"})).await;
        assert_eq!(
            run_step(&agent, &runtime, &settings, &mut log).await,
            StepEnd::WaitingForConfirmation
        );
        assert_eq!(step::pending_actions(&log.events).len(), 2);
        // accepted: the next step executes the pending actions without an LLM call
        assert_eq!(
            run_step(&agent, &runtime, &settings, &mut log).await,
            StepEnd::Continue
        );
        assert_eq!(fake.received().len(), 1);
        assert_eq!(
            run_step(&agent, &runtime, &settings, &mut log).await,
            StepEnd::Finished
        );
        assert_eq!(
            kinds(&log.events),
            [
                "SystemPromptEvent",
                "MessageEvent",
                "ActionEvent:think",
                "ActionEvent:task_tracker",
                "ObservationEvent:think",
                "ObservationEvent:task_tracker",
                "MessageEvent"
            ]
        );
        let second = &fake.received()[1].body["messages"];
        assert_eq!(second.as_array().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn llm_errors_end_the_step() {
        let replies = vec![Reply::json(
            400,
            &json!({"error": {"message": "bad request from fake llm", "type": "invalid_request_error"}}),
        )];
        let (fake, agent, runtime, mut log, settings, _dir) =
            setup(replies, json!({"kind": "NeverConfirm"})).await;
        assert_eq!(
            run_step(&agent, &runtime, &settings, &mut log).await,
            StepEnd::Error {
                code: "LLMBadRequestError".into(),
                detail: "litellm.BadRequestError: OpenAIException - bad request from fake llm"
                    .into()
            }
        );
        assert_eq!(fake.received().len(), 1);
        assert_eq!(log.events.len(), 2);
    }
}

/// Runs against the conformance suite's fake LLM when `OHCONF_FAKE_LLM` is set
/// (`python3 -m ohconf.fakellm --port N`, then `OHCONF_FAKE_LLM=http://127.0.0.1:N/v1`).
#[cfg(test)]
mod conformance_fake {
    use super::*;
    use crate::llm::Metrics;
    use crate::tools::{RuntimeConfig, text_part};
    use serde_json::json;

    struct Log(Vec<Value>);

    impl StepHost for Log {
        async fn events(&mut self) -> Arc<Vec<Value>> {
            Arc::new(self.0.clone())
        }
        async fn emit(&mut self, event: Value) {
            self.0.push(event);
        }
        async fn llm_usage(&mut self, _usage_id: &str, response: &LlmResponse) {
            Metrics::new("m").record(response);
        }
    }

    #[tokio::test]
    #[ignore = "needs OHCONF_FAKE_LLM"]
    async fn default_script_runs_to_finish() {
        let Ok(base) = std::env::var("OHCONF_FAKE_LLM") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let sid = format!("rust-{}", uuid::Uuid::new_v4().simple());
        let agent_json = json!({"llm": {"model": "openai/fake-model", "base_url": base, "api_key": format!("ohconf-{sid}"), "usage_id": "agent"},
            "tools": [{"name": "terminal"}, {"name": "file_editor"}, {"name": "task_tracker"}]});
        let agent = Agent::new(&agent_json, dir.path().to_str().unwrap()).unwrap();
        let runtime = ToolRuntime::new(
            &RuntimeConfig {
                working_dir: dir.path().into(),
                conversation_dir: None,
            },
            agent.tools(),
        );
        let (user, _) = agent.user_message_event(vec![text_part("Please say hello")], &[]);
        let mut log = Log(vec![agent.system_prompt_event(), user]);
        let settings = StepSettings {
            confirmation_policy: json!({"kind": "NeverConfirm"}),
            security_analyzer: None,
        };
        assert_eq!(
            run_step(&agent, &runtime, &settings, &mut log).await,
            StepEnd::Continue
        );
        assert_eq!(
            run_step(&agent, &runtime, &settings, &mut log).await,
            StepEnd::Finished
        );
        let requests: Value = reqwest::get(format!(
            "{}/_ohconf/requests?sid={sid}",
            base.trim_end_matches("/v1")
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        println!(
            "{}",
            serde_json::to_string_pretty(&requests[1]["body"]["messages"].as_array().unwrap()[2..])
                .unwrap()
        );
        assert_eq!(requests.as_array().unwrap().len(), 2);
    }
}

/// The step future can run on any executor thread (`tokio::spawn`, `actix::spawn`).
#[allow(dead_code)]
fn step_future_is_send<H: StepHost>(
    agent: &Agent,
    runtime: &ToolRuntime,
    settings: &StepSettings,
    host: &mut H,
) {
    fn is_send<T: Send>(_: &T) {}
    fn is_sync<T: Send + Sync>() {}
    let fut = run_step(agent, runtime, settings, host);
    is_send(&fut);
    is_sync::<Agent>();
    is_sync::<ToolRuntime>();
}
