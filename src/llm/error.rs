//! LLM failures, classified for retries and mapped to the `code`/`detail` of the
//! `ConversationErrorEvent` the run ends with (agent-behaviour §3.5).

use super::model::Provider;

/// What went wrong, as far as retrying and error events care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmErrorKind {
    BadRequest,
    ContextWindowExceeded,
    Authentication,
    PermissionDenied,
    NotFound,
    RateLimit,
    Timeout,
    /// HTTP 5xx.
    ServiceUnavailable,
    /// The connection failed before a response arrived.
    Connection,
    /// A 2xx reply without choices / output.
    NoResponse,
    /// Anything else (unparseable reply, unsupported option).
    Other,
}

/// An LLM call failure after retries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct LlmError {
    pub kind: LlmErrorKind,
    /// `ConversationErrorEvent.code` (exception class name in the reference).
    pub code: String,
    /// `ConversationErrorEvent.detail`.
    pub detail: String,
    /// HTTP status when there was one.
    pub status: Option<u16>,
    /// `Retry-After` seconds the provider asked for.
    pub retry_after: Option<f64>,
}

/// Lower-cased fragments that mark a context-window overflow in a 400 text.
const CONTEXT_WINDOW_MARKERS: &[&str] = &[
    "contextwindowexceedederror",
    "prompt is too long",
    "input length and `max_tokens` exceed context limit",
    "please reduce the length of",
    "the request exceeds the available context size",
    "context length exceeded",
    "input exceeds the context window",
    "maximum context length",
];

impl LlmError {
    /// Whether the SDK layer retries it.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            LlmErrorKind::RateLimit
            | LlmErrorKind::Timeout
            | LlmErrorKind::ServiceUnavailable
            | LlmErrorKind::Connection
            | LlmErrorKind::NoResponse => true,
            LlmErrorKind::BadRequest
            | LlmErrorKind::ContextWindowExceeded
            | LlmErrorKind::Authentication
            | LlmErrorKind::PermissionDenied
            | LlmErrorKind::NotFound
            | LlmErrorKind::Other => false,
        }
    }

    /// Whether the provider client layer (OpenAI SDK) retries it: 408, 409, 429, 5xx, connection.
    pub fn is_client_retryable(&self) -> bool {
        match self.status {
            Some(s) => s == 408 || s == 409 || s == 429 || s >= 500,
            None => matches!(self.kind, LlmErrorKind::Connection | LlmErrorKind::Timeout),
        }
    }

    /// A context-window overflow (a condenser may handle it).
    pub fn is_context_window(&self) -> bool {
        self.kind == LlmErrorKind::ContextWindowExceeded
    }

    /// An error that is not about HTTP (bad configuration, unusable reply).
    pub fn other(code: &str, detail: impl Into<String>) -> LlmError {
        LlmError {
            kind: LlmErrorKind::Other,
            code: code.into(),
            detail: detail.into(),
            status: None,
            retry_after: None,
        }
    }

    /// The request could not be sent or no response came back.
    pub fn connection(provider: Provider, err: &reqwest::Error) -> LlmError {
        let exc = provider.exception_name();
        if err.is_timeout() {
            LlmError {
                kind: LlmErrorKind::Timeout,
                code: "LLMTimeoutError".into(),
                detail: format!("litellm.Timeout: Timeout Error: {exc} - Request timed out."),
                status: None,
                retry_after: None,
            }
        } else {
            LlmError {
                kind: LlmErrorKind::Connection,
                code: "LLMServiceUnavailableError".into(),
                detail: format!(
                    "litellm.APIConnectionError: APIConnectionError: {exc} - Connection error."
                ),
                status: None,
                retry_after: None,
            }
        }
    }

    /// A 2xx reply without choices (`LLMNoResponseError`).
    pub fn no_response(detail: impl Into<String>) -> LlmError {
        LlmError {
            kind: LlmErrorKind::NoResponse,
            code: "LLMNoResponseError".into(),
            detail: detail.into(),
            status: None,
            retry_after: None,
        }
    }

    /// Maps an HTTP error reply. `body` is the raw response text.
    pub fn from_status(
        provider: Provider,
        status: u16,
        body: &str,
        retry_after: Option<f64>,
    ) -> LlmError {
        let exc = provider.exception_name();
        let message = error_message(body);
        let lower = message.to_ascii_lowercase();
        let (kind, code, detail) = match status {
            400 | 413 | 422 if CONTEXT_WINDOW_MARKERS.iter().any(|m| lower.contains(m)) => (
                LlmErrorKind::ContextWindowExceeded,
                "LLMContextWindowExceedError",
                format!(
                    "litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: {exc} - {message}"
                ),
            ),
            400 | 422 => (
                LlmErrorKind::BadRequest,
                "LLMBadRequestError",
                format!("litellm.BadRequestError: {exc} - {message}"),
            ),
            401 => (
                LlmErrorKind::Authentication,
                "AuthenticationError",
                format!("litellm.AuthenticationError: AuthenticationError: {exc} - {message}"),
            ),
            403 => (
                LlmErrorKind::PermissionDenied,
                "PermissionDeniedError",
                format!("litellm.PermissionDeniedError: PermissionDeniedError: {exc} - {message}"),
            ),
            404 => (
                LlmErrorKind::NotFound,
                "NotFoundError",
                format!("litellm.NotFoundError: NotFoundError: {exc} - {message}"),
            ),
            408 => (
                LlmErrorKind::Timeout,
                "LLMTimeoutError",
                format!("litellm.Timeout: Timeout Error: {exc} - {message}"),
            ),
            429 => (
                LlmErrorKind::RateLimit,
                "LLMRateLimitError",
                format!("litellm.RateLimitError: RateLimitError: {exc} - {message}"),
            ),
            503 => (
                LlmErrorKind::ServiceUnavailable,
                "LLMServiceUnavailableError",
                format!(
                    "litellm.ServiceUnavailableError: ServiceUnavailableError: {exc} - {message}"
                ),
            ),
            s if s >= 500 => (
                LlmErrorKind::ServiceUnavailable,
                "LLMServiceUnavailableError",
                format!("litellm.InternalServerError: InternalServerError: {exc} - {message}"),
            ),
            _ => (
                LlmErrorKind::BadRequest,
                "LLMBadRequestError",
                format!("litellm.BadRequestError: {exc} - {message}"),
            ),
        };
        LlmError {
            kind,
            code: code.into(),
            detail,
            status: Some(status),
            retry_after,
        }
    }
}

/// The human message of an error body: `error.message`, `message`, `detail`, else the text.
fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let found = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .and_then(|m| m.as_str())
            .map(str::to_string)
    });
    found.unwrap_or_else(|| body.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_statuses_like_the_reference() {
        let e = LlmError::from_status(
            Provider::OpenAi,
            500,
            r#"{"error":{"message":"boom internal"}}"#,
            None,
        );
        assert_eq!(e.code, "LLMServiceUnavailableError");
        assert_eq!(
            e.detail,
            "litellm.InternalServerError: InternalServerError: OpenAIException - boom internal"
        );
        assert!(e.is_retryable() && e.is_client_retryable());
        let e = LlmError::from_status(
            Provider::OpenAi,
            400,
            r#"{"error":{"message":"bad request: invalid thing"}}"#,
            None,
        );
        assert_eq!(e.code, "LLMBadRequestError");
        assert_eq!(
            e.detail,
            "litellm.BadRequestError: OpenAIException - bad request: invalid thing"
        );
        assert!(!e.is_retryable() && !e.is_client_retryable());
        let e = LlmError::from_status(
            Provider::OpenAi,
            401,
            r#"{"error":{"message":"Incorrect API key provided"}}"#,
            None,
        );
        assert_eq!(e.code, "AuthenticationError");
        assert_eq!(
            e.detail,
            "litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key provided"
        );
        let e = LlmError::from_status(
            Provider::OpenAi,
            429,
            r#"{"error":{"message":"fake error 429"}}"#,
            Some(2.0),
        );
        assert_eq!(e.code, "LLMRateLimitError");
        assert_eq!(
            e.detail,
            "litellm.RateLimitError: RateLimitError: OpenAIException - fake error 429"
        );
        assert_eq!(e.retry_after, Some(2.0));
        let e = LlmError::from_status(
            Provider::OpenAi,
            400,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens"}}"#,
            None,
        );
        assert_eq!(e.code, "LLMContextWindowExceedError");
        assert!(e.is_context_window());
        let e = LlmError::from_status(Provider::Anthropic, 500, "plain text", None);
        assert_eq!(
            e.detail,
            "litellm.InternalServerError: InternalServerError: AnthropicException - plain text"
        );
    }
}
