//! Per-LLM usage accounting in the reference's `Metrics` shape (EVENTS.md §6.9,
//! agent-behaviour §3.7). The conversation keeps one [`Metrics`] per `usage_id`;
//! `stats` state updates carry [`Metrics::snapshot_json`], ConversationInfo and `full_state`
//! carry [`Metrics::full_json`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::LlmResponse;

/// Token counts of one call, or accumulated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub context_window: u64,
    pub per_turn_token: u64,
    pub response_id: String,
}

/// One recorded cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub model: String,
    pub cost: f64,
    /// Seconds since the epoch.
    pub timestamp: f64,
}

/// One recorded latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseLatency {
    pub model: String,
    pub latency: f64,
    pub response_id: String,
}

/// Usage of one LLM (`usage_to_metrics[usage_id]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub model_name: String,
    pub accumulated_cost: f64,
    pub max_budget_per_task: Option<f64>,
    pub accumulated_token_usage: TokenUsage,
    pub costs: Vec<Cost>,
    pub response_latencies: Vec<ResponseLatency>,
    pub token_usages: Vec<TokenUsage>,
}

impl Metrics {
    /// Empty metrics for `model_name` (the configured model string, e.g. `openai/fake-model`).
    pub fn new(model_name: &str) -> Metrics {
        Metrics {
            model_name: model_name.to_string(),
            accumulated_cost: 0.0,
            max_budget_per_task: None,
            accumulated_token_usage: TokenUsage {
                model: model_name.to_string(),
                ..TokenUsage::default()
            },
            costs: Vec::new(),
            response_latencies: Vec::new(),
            token_usages: Vec::new(),
        }
    }

    /// Reads metrics back from their full JSON form (persisted state).
    pub fn from_json(value: &Value) -> Option<Metrics> {
        serde_json::from_value(value.clone()).ok()
    }

    /// Accounts one successful response: latency always, cost when known and non-zero, tokens
    /// when prompt or completion tokens are non-zero.
    pub fn record(&mut self, resp: &LlmResponse) {
        let model = self.model_name.clone();
        self.response_latencies.push(ResponseLatency {
            model: model.clone(),
            latency: resp.latency,
            response_id: resp.id.clone(),
        });
        if let Some(cost) = resp.cost.filter(|c| *c > 0.0) {
            self.accumulated_cost += cost;
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.costs.push(Cost {
                model: model.clone(),
                cost,
                timestamp,
            });
        }
        let u = resp.usage;
        if u.prompt_tokens > 0 || u.completion_tokens > 0 {
            let usage = TokenUsage {
                model: model.clone(),
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                cache_read_tokens: u.cache_read_tokens,
                cache_write_tokens: u.cache_write_tokens,
                reasoning_tokens: u.reasoning_tokens,
                context_window: resp.context_window,
                per_turn_token: u.prompt_tokens + u.completion_tokens,
                response_id: resp.id.clone(),
            };
            let acc = &mut self.accumulated_token_usage;
            acc.prompt_tokens += usage.prompt_tokens;
            acc.completion_tokens += usage.completion_tokens;
            acc.cache_read_tokens += usage.cache_read_tokens;
            acc.cache_write_tokens += usage.cache_write_tokens;
            acc.reasoning_tokens += usage.reasoning_tokens;
            acc.context_window = acc.context_window.max(usage.context_window);
            acc.per_turn_token = usage.per_turn_token;
            self.token_usages.push(usage);
        }
    }

    /// The `stats` state-update form (no per-call lists).
    pub fn snapshot_json(&self) -> Value {
        json!({
            "model_name": self.model_name,
            "accumulated_cost": self.accumulated_cost,
            "max_budget_per_task": self.max_budget_per_task,
            "accumulated_token_usage": self.accumulated_token_usage,
        })
    }

    /// The ConversationInfo / `full_state` form (with lists).
    pub fn full_json(&self) -> Value {
        let mut v = self.snapshot_json();
        v["costs"] = json!(self.costs);
        v["response_latencies"] = json!(self.response_latencies);
        v["token_usages"] = json!(self.token_usages);
        v
    }
}

/// `{"usage_to_metrics": {usage_id: …}}` from ordered entries; `full` picks the form.
pub fn stats_json<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a Metrics)>,
    full: bool,
) -> Value {
    let mut map = serde_json::Map::new();
    for (id, m) in entries {
        map.insert(
            id.to_string(),
            if full {
                m.full_json()
            } else {
                m.snapshot_json()
            },
        );
    }
    json!({"usage_to_metrics": map})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Usage;

    fn resp(id: &str, p: u64, c: u64, cost: Option<f64>) -> LlmResponse {
        LlmResponse {
            id: id.into(),
            usage: Usage {
                prompt_tokens: p,
                completion_tokens: c,
                ..Usage::default()
            },
            latency: 0.25,
            cost,
            ..LlmResponse::default()
        }
    }

    #[test]
    fn accumulates_like_the_reference() {
        let mut m = Metrics::new("openai/fake-model");
        m.record(&resp("r1", 10, 5, None));
        m.record(&resp("r2", 12, 3, Some(0.5)));
        m.record(&resp("r3", 0, 0, Some(0.0)));
        assert_eq!(m.response_latencies.len(), 3);
        assert_eq!(m.token_usages.len(), 2);
        assert_eq!(m.costs.len(), 1);
        assert_eq!(m.accumulated_cost, 0.5);
        assert_eq!(
            m.snapshot_json(),
            json!({"model_name": "openai/fake-model", "accumulated_cost": 0.5, "max_budget_per_task": null,
                "accumulated_token_usage": {"model": "openai/fake-model", "prompt_tokens": 22, "completion_tokens": 8,
                "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0, "context_window": 0,
                "per_turn_token": 15, "response_id": ""}})
        );
        let full = m.full_json();
        assert_eq!(full["token_usages"][0]["response_id"], "r1");
        assert_eq!(
            full["response_latencies"][1],
            json!({"model": "openai/fake-model", "latency": 0.25, "response_id": "r2"})
        );
        assert_eq!(Metrics::from_json(&full), Some(m.clone()));
        let stats = stats_json([("agent", &m)], false);
        assert_eq!(
            stats["usage_to_metrics"]["agent"]["accumulated_cost"],
            json!(0.5)
        );
    }
}
