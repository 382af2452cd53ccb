//! The documentation of every route, keyed by the exact `(method, pattern)` of
//! [`crate::http::ROUTES`]: summary, tag, query parameters, request body and responses. Path
//! parameters come from the pattern itself; schemas come from the Rust types through
//! `schemars`. A unit test fails when a route has no entry here, or an entry no route.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use uuid::Uuid;

use super::schemas::{
    AskAgentRequest, BashEventPage, BashEventSortOrder, ConfirmationResponseRequest,
    ConversationPage, EventPage, EventSortOrder, GenerateTitleRequest, HttpValidationError,
    SetConfirmationPolicyRequest, SetSecurityAnalyzerRequest, UpdateConversationRequest,
    UpdateSecretsRequest, UploadFileBody,
};
use crate::bash::model::{BashCommand, BashEvent, BashOutput, ExecuteBashRequest};
use crate::conversation::registry::SortOrder as ConversationSortOrder;
use crate::model::api::{
    AskAgentResponse, DesktopUrlResponse, GenerateTitleResponse, ServerInfo, Success,
    VscodeUrlResponse,
};
use crate::model::{
    ConversationInfo, Event, ExecutionStatus, SendMessageRequest, StartConversationRequest,
};
use crate::workspace::git::{GitChange, GitDiff};

/// Produces a schema, registering the components it needs in the generator.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// `T`'s schema by reference (a component) when `T` is a named type, else inline.
pub fn named<T: JsonSchema + ?Sized>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// `T`'s schema written out in place even when `T` is a component (as the reference does for
/// the single-event routes).
pub fn inline<T: JsonSchema + ?Sized>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

/// A query parameter.
pub struct Param {
    pub name: &'static str,
    pub required: bool,
    pub schema: SchemaFn,
    pub description: &'static str,
}

const fn q(name: &'static str, schema: SchemaFn, description: &'static str) -> Param {
    Param {
        name,
        required: false,
        schema,
        description,
    }
}

/// A request body.
pub enum Body {
    None,
    /// `application/json`; `required: false` when the whole body may be left out.
    Json {
        schema: SchemaFn,
        required: bool,
    },
    /// `multipart/form-data`.
    Multipart(SchemaFn),
}

const fn json(schema: SchemaFn) -> Body {
    Body::Json {
        schema,
        required: true,
    }
}

/// What a response carries.
pub enum Content {
    /// No body worth describing (errors carry `{"detail": str}`).
    Detail,
    /// `application/json` with this schema.
    Json(SchemaFn),
    /// Another media type, with no schema (files, pages, upgrades).
    Media(&'static str),
    /// Nothing at all.
    Empty,
}

/// One documented response.
pub struct Resp {
    pub status: u16,
    pub description: &'static str,
    pub content: Content,
}

const fn ok(schema: SchemaFn) -> Resp {
    Resp {
        status: 200,
        description: "Successful Response",
        content: Content::Json(schema),
    }
}

const fn err(status: u16, description: &'static str) -> Resp {
    Resp {
        status,
        description,
        content: Content::Detail,
    }
}

const R422: Resp = Resp {
    status: 422,
    description: "Validation Error",
    content: Content::Json(named::<HttpValidationError>),
};
const R404: Resp = err(404, "Not Found");
const R404_CONVERSATION: Resp = err(404, "Conversation not found");

/// The documentation of one route.
pub struct Operation {
    pub method: &'static str,
    /// Exactly as in [`crate::http::ROUTES`].
    pub pattern: &'static str,
    pub tag: &'static str,
    /// Also gives the `operationId`, as FastAPI derives it.
    pub summary: &'static str,
    pub description: &'static str,
    pub query: &'static [Param],
    pub body: Body,
    pub responses: &'static [Resp],
}

// ---- schemas that are not a single Rust type -------------------------------------------------

fn alive(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]})
}
fn health(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "const": "OK"})
}
fn string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string"})
}
fn integer(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer"})
}
fn boolean(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "boolean", "default": false})
}
fn date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "date-time"})
}
fn limit(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "exclusiveMinimum": 0, "maximum": 100, "default": 100})
}
fn string_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "items": {"type": "string"}})
}
fn uuid_list(g: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "items": g.subschema_for::<Uuid>()})
}
fn with_default(mut s: Schema, default: &str) -> Schema {
    s.insert("default".into(), default.into());
    s
}
fn conversation_sort(g: &mut SchemaGenerator) -> Schema {
    with_default(
        g.subschema_for::<ConversationSortOrder>(),
        "CREATED_AT_DESC",
    )
}
fn event_sort(g: &mut SchemaGenerator) -> Schema {
    with_default(g.subschema_for::<EventSortOrder>(), "TIMESTAMP")
}
fn bash_sort(g: &mut SchemaGenerator) -> Schema {
    with_default(g.subschema_for::<BashEventSortOrder>(), "TIMESTAMP")
}
fn bash_kind(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": ["BashCommand", "BashOutput"]})
}
fn vscode_base(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "default": "http://localhost:8001"})
}
fn desktop_base(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "default": "http://localhost:8002"})
}
fn workspace_dir(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "default": "workspace"})
}
fn cleared(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "properties": {"cleared_count": {"type": "integer"}}, "required": ["cleared_count"]})
}
fn vscode_status(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "running": {"type": "boolean"},
            "enabled": {"type": "boolean"},
            "message": {"type": "string", "description": "Only when VS Code is disabled."},
        },
        "required": ["running", "enabled"],
    })
}
fn openapi_document(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "description": "This OpenAPI 3.1 document."})
}

/// The path parameter `name`'s schema (the pattern gives the names).
pub fn path_param(name: &str, g: &mut SchemaGenerator) -> (Schema, &'static str) {
    match name {
        "conversation_id" => (
            g.subschema_for::<Uuid>(),
            "Conversation id, dashed or 32 hex digits.",
        ),
        "event_id" => (string(g), "Event id."),
        "path" => (
            string(g),
            "A file system path; absolute paths follow a double slash (`//abs/dir`).",
        ),
        _ => (string(g), ""),
    }
}

// ---- shared parameter lists ------------------------------------------------------------------

const PAGE_ID: Param = q("page_id", string, "`next_page_id` of the previous page.");
const LIMIT: Param = q("limit", limit, "Page size.");
const STATUS: Param = q(
    "status",
    named::<ExecutionStatus>,
    "Only conversations in this status.",
);
const KIND: Param = q(
    "kind",
    string,
    "Event kind: the full class path (as the reference names it) or the short `kind`.",
);
const SOURCE: Param = q("source", string, "`agent`, `user` or `environment`.");
const BODY: Param = q(
    "body",
    string,
    "Case-insensitive text that a MessageEvent's text must contain.",
);
const GTE: Param = q("timestamp__gte", date_time, "Events at or after this time.");
const LT: Param = q("timestamp__lt", date_time, "Events before this time.");
const SESSION_KEY: Param = q(
    "session_api_key",
    string,
    "A session API key, when keys are configured (the header is not accepted here).",
);
const RESEND_ALL: Param = q(
    "resend_all",
    boolean,
    "Replay every recorded event before the live ones.",
);

const SUCCESS_404: &[Resp] = &[ok(named::<Success>), R404, R422];
const HTML: &[Resp] = &[Resp {
    status: 200,
    description: "HTML page",
    content: Content::Media("text/html"),
}];
const WEBSOCKET: &[Resp] = &[
    Resp {
        status: 101,
        description: "Switching Protocols: one event per text frame follows",
        content: Content::Empty,
    },
    Resp {
        status: 400,
        description: "Not a WebSocket handshake (a plain HTTP request), empty body",
        content: Content::Empty,
    },
    Resp {
        status: 403,
        description: "Refused handshake (bad key or id), empty body",
        content: Content::Empty,
    },
];

const fn op(
    method: &'static str,
    pattern: &'static str,
    tag: &'static str,
    summary: &'static str,
) -> Operation {
    Operation {
        method,
        pattern,
        tag,
        summary,
        description: "",
        query: &[],
        body: Body::None,
        responses: &[],
    }
}

const SERVER: &str = "Server Details";
const DOCS: &str = "Documentation";
const CONVERSATIONS: &str = "Conversations";
const EVENTS: &str = "Events";
const BASH: &str = "Bash";
const FILES: &str = "Files";
const SOCKETS: &str = "WebSockets";

/// Every route's documentation.
pub static OPERATIONS: &[Operation] = &[
    // ---- server details ----
    Operation {
        description: "Liveness probe.",
        responses: &[ok(alive)],
        ..op("GET", "/alive", SERVER, "Alive")
    },
    Operation {
        description: "Health probe.",
        responses: &[ok(health)],
        ..op("GET", "/health", SERVER, "Health")
    },
    Operation {
        description: "Uptime, idle time and version.",
        responses: &[ok(named::<ServerInfo>)],
        ..op("GET", "/server_info", SERVER, "Get Server Info")
    },
    Operation {
        description: "Server details, or a redirect to the static files when a static directory is configured.",
        responses: &[
            ok(named::<ServerInfo>),
            Resp {
                status: 302,
                description: "Redirect to `/static/index.html` or `/static/`",
                content: Content::Empty,
            },
        ],
        ..op("GET", "/", SERVER, "Get Server Info")
    },
    Operation {
        description: "A file of the configured static directory.",
        responses: &[
            Resp {
                status: 200,
                description: "The file, with the media type its extension gives",
                content: Content::Media("*/*"),
            },
            R404,
        ],
        ..op("GET", "/static/{path:.*}", SERVER, "Static File")
    },
    // ---- documentation ----
    Operation {
        description: "This document.",
        responses: &[ok(openapi_document)],
        ..op("GET", "/openapi.json", DOCS, "Openapi")
    },
    Operation {
        description: "A browser page listing every operation of this document; it needs no internet access.",
        responses: HTML,
        ..op("GET", "/docs", DOCS, "Docs")
    },
    Operation {
        description: "The same page as `/docs`.",
        responses: HTML,
        ..op("GET", "/redoc", DOCS, "Redoc")
    },
    Operation {
        description: "Hands an OAuth2 redirect back to the page that opened it.",
        responses: HTML,
        ..op("GET", "/docs/oauth2-redirect", DOCS, "Oauth2 Redirect")
    },
    // ---- conversations ----
    Operation {
        description: "Conversations, optionally of one status, a page at a time.",
        query: &[
            PAGE_ID,
            LIMIT,
            STATUS,
            q("sort_order", conversation_sort, "Sort key and direction."),
        ],
        responses: &[ok(named::<ConversationPage>), R422],
        ..op(
            "GET",
            "/api/conversations/search",
            CONVERSATIONS,
            "Search Conversations",
        )
    },
    Operation {
        description: "How many conversations there are, optionally of one status.",
        query: &[STATUS],
        responses: &[ok(integer), R422],
        ..op(
            "GET",
            "/api/conversations/count",
            CONVERSATIONS,
            "Count Conversations",
        )
    },
    Operation {
        description: "Conversations by id, in the order asked; null for unknown ids. At most 99 ids.",
        query: &[Param {
            name: "ids",
            required: true,
            schema: uuid_list,
            description: "Repeat the parameter for each id.",
        }],
        responses: &[ok(named::<Vec<Option<ConversationInfo<'static>>>>), R422],
        ..op(
            "GET",
            "/api/conversations",
            CONVERSATIONS,
            "Batch Get Conversations",
        )
    },
    Operation {
        description: "Creates a conversation (201), or returns the loaded one whose id is given (200).",
        body: json(named::<StartConversationRequest>),
        responses: &[
            Resp {
                description: "An existing conversation",
                ..ok(named::<ConversationInfo<'static>>)
            },
            Resp {
                status: 201,
                description: "Created",
                ..ok(named::<ConversationInfo<'static>>)
            },
            R422,
        ],
        ..op(
            "POST",
            "/api/conversations",
            CONVERSATIONS,
            "Start Conversation",
        )
    },
    Operation {
        responses: &[ok(named::<ConversationInfo<'static>>), R404, R422],
        ..op(
            "GET",
            "/api/conversations/{conversation_id}",
            CONVERSATIONS,
            "Get Conversation",
        )
    },
    Operation {
        description: "Sets the title; `{\"success\": false}` for an unknown conversation.",
        body: json(named::<UpdateConversationRequest>),
        responses: &[ok(named::<Success>), R422],
        ..op(
            "PATCH",
            "/api/conversations/{conversation_id}",
            CONVERSATIONS,
            "Update Conversation",
        )
    },
    Operation {
        description: "Stops the conversation and deletes its directory.",
        responses: &[ok(named::<Success>), err(400, "Unknown conversation"), R422],
        ..op(
            "DELETE",
            "/api/conversations/{conversation_id}",
            CONVERSATIONS,
            "Delete Conversation",
        )
    },
    Operation {
        description: "Runs the agent and answers when the run ends.",
        responses: &[
            ok(named::<Success>),
            R404,
            err(409, "Already running"),
            R422,
        ],
        ..op(
            "POST",
            "/api/conversations/{conversation_id}/run",
            CONVERSATIONS,
            "Run Conversation",
        )
    },
    Operation {
        description: "Pauses an idle or running conversation.",
        responses: &[ok(named::<Success>), err(400, "Unknown conversation"), R422],
        ..op(
            "POST",
            "/api/conversations/{conversation_id}/pause",
            CONVERSATIONS,
            "Pause Conversation",
        )
    },
    Operation {
        body: json(named::<UpdateSecretsRequest>),
        responses: SUCCESS_404,
        ..op(
            "POST",
            "/api/conversations/{conversation_id}/secrets",
            CONVERSATIONS,
            "Update Conversation Secrets",
        )
    },
    Operation {
        body: json(named::<SetConfirmationPolicyRequest>),
        responses: SUCCESS_404,
        ..op(
            "POST",
            "/api/conversations/{conversation_id}/confirmation_policy",
            CONVERSATIONS,
            "Set Conversation Confirmation Policy",
        )
    },
    Operation {
        body: json(named::<SetSecurityAnalyzerRequest>),
        responses: SUCCESS_404,
        ..op(
            "POST",
            "/api/conversations/{conversation_id}/security_analyzer",
            CONVERSATIONS,
            "Set Conversation Security Analyzer",
        )
    },
    Operation {
        description: "A title from the first user message (asked of an LLM when one is available); it is not stored.",
        body: Body::Json {
            schema: named::<GenerateTitleRequest>,
            required: false,
        },
        responses: &[ok(named::<GenerateTitleResponse>), R422],
        ..op(
            "POST",
            "/api/conversations/{conversation_id}/generate_title",
            CONVERSATIONS,
            "Generate Conversation Title",
        )
    },
    Operation {
        description: "Answers a question from the conversation's context without changing it.",
        body: json(named::<AskAgentRequest>),
        responses: &[ok(named::<AskAgentResponse>), R422],
        ..op(
            "POST",
            "/api/conversations/{conversation_id}/ask_agent",
            CONVERSATIONS,
            "Ask Agent",
        )
    },
    // ---- events ----
    Operation {
        description: "Events in timestamp order, filtered, a page at a time.",
        query: &[
            PAGE_ID,
            LIMIT,
            KIND,
            SOURCE,
            BODY,
            q("sort_order", event_sort, "Timestamp order."),
            GTE,
            LT,
        ],
        responses: &[ok(named::<EventPage>), R404_CONVERSATION, R422],
        ..op(
            "GET",
            "/api/conversations/{conversation_id}/events/search",
            EVENTS,
            "Search Conversation Events",
        )
    },
    Operation {
        query: &[KIND, SOURCE, BODY, GTE, LT],
        responses: &[ok(integer), R404_CONVERSATION, R422],
        ..op(
            "GET",
            "/api/conversations/{conversation_id}/events/count",
            EVENTS,
            "Count Conversation Events",
        )
    },
    Operation {
        description: "Accepting runs the pending actions (and answers when the run ends); rejecting records why and leaves them undone.",
        body: json(named::<ConfirmationResponseRequest>),
        responses: &[ok(named::<Success>), R404_CONVERSATION, R422],
        ..op(
            "POST",
            "/api/conversations/{conversation_id}/events/respond_to_confirmation",
            EVENTS,
            "Respond To Confirmation",
        )
    },
    Operation {
        responses: &[ok(inline::<Event>), R404, R422],
        ..op(
            "GET",
            "/api/conversations/{conversation_id}/events/{event_id}",
            EVENTS,
            "Get Conversation Event",
        )
    },
    Operation {
        description: "Events by id (a JSON list in the body of this GET); null for unknown ids.",
        body: json(string_list),
        responses: &[ok(named::<Vec<Option<Event>>>), R404_CONVERSATION, R422],
        ..op(
            "GET",
            "/api/conversations/{conversation_id}/events",
            EVENTS,
            "Batch Get Conversation Events",
        )
    },
    Operation {
        description: "Appends a user message; `run: true` also starts the agent in the background.",
        body: json(named::<SendMessageRequest>),
        responses: &[ok(named::<Success>), R404_CONVERSATION, R422],
        ..op(
            "POST",
            "/api/conversations/{conversation_id}/events",
            EVENTS,
            "Send Message",
        )
    },
    // ---- tools ----
    Operation {
        description: "Names of the registered tools.",
        responses: &[ok(string_list)],
        ..op("GET", "/api/tools/", "Tools", "List Available Tools")
    },
    // ---- bash ----
    Operation {
        query: &[
            q("kind__eq", bash_kind, "Only this kind."),
            q(
                "command_id__eq",
                named::<Uuid>,
                "Only the outputs of this command.",
            ),
            q(
                "timestamp__gte",
                date_time,
                "Events at or after this time (second resolution).",
            ),
            q(
                "timestamp__lt",
                date_time,
                "Events before this time (second resolution).",
            ),
            q("sort_order", bash_sort, "Timestamp order."),
            PAGE_ID,
            LIMIT,
        ],
        responses: &[ok(named::<BashEventPage>), R422],
        ..op(
            "GET",
            "/api/bash/bash_events/search",
            BASH,
            "Search Bash Events",
        )
    },
    Operation {
        description: "Bash events by id (a JSON list in the body of this GET); null for unknown ids.",
        body: json(string_list),
        responses: &[ok(named::<Vec<Option<BashEvent>>>), R422],
        ..op(
            "GET",
            "/api/bash/bash_events/",
            BASH,
            "Batch Get Bash Events",
        )
    },
    Operation {
        responses: &[ok(inline::<BashEvent>), R404, R422],
        ..op(
            "GET",
            "/api/bash/bash_events/{event_id}",
            BASH,
            "Get Bash Event",
        )
    },
    Operation {
        description: "Deletes every recorded bash event.",
        responses: &[ok(cleared)],
        ..op(
            "DELETE",
            "/api/bash/bash_events",
            BASH,
            "Clear All Bash Events",
        )
    },
    Operation {
        description: "Starts a command in the background; its output arrives as BashOutput events.",
        body: json(named::<ExecuteBashRequest>),
        responses: &[ok(named::<BashCommand>), R422],
        ..op(
            "POST",
            "/api/bash/start_bash_command",
            BASH,
            "Start Bash Command",
        )
    },
    Operation {
        description: "Runs a command to its end and answers with the final output.",
        body: json(named::<ExecuteBashRequest>),
        responses: &[ok(named::<BashOutput>), R422],
        ..op(
            "POST",
            "/api/bash/execute_bash_command",
            BASH,
            "Execute Bash Command",
        )
    },
    // ---- git ----
    Operation {
        description: "Files that differ from the upstream ref, sorted by path.",
        responses: &[ok(named::<Vec<GitChange>>), R422],
        ..op("GET", "/api/git/changes/{path:.*}", "Git", "Git Changes")
    },
    Operation {
        description: "A file at the upstream ref and as it is now.",
        responses: &[ok(named::<GitDiff>), R422],
        ..op("GET", "/api/git/diff/{path:.*}", "Git", "Git Diff")
    },
    // ---- files ----
    Operation {
        description: "Writes the `file` part to an absolute path, creating parent directories.",
        body: Body::Multipart(named::<UploadFileBody>),
        responses: &[ok(named::<Success>), R422],
        ..op("POST", "/api/file/upload/{path:.*}", FILES, "Upload File")
    },
    Operation {
        description: "The file at an absolute path; Range requests are honoured.",
        responses: &[
            Resp {
                status: 200,
                description: "The file",
                content: Content::Media("application/octet-stream"),
            },
            err(400, "Relative path, or not a file"),
            err(404, "File not found"),
            R422,
        ],
        ..op(
            "GET",
            "/api/file/download/{path:.*}",
            FILES,
            "Download File",
        )
    },
    Operation {
        description: "A zip of the conversation's directory.",
        responses: &[
            Resp {
                status: 200,
                description: "The zip file",
                content: Content::Media("application/octet-stream"),
            },
            R422,
        ],
        ..op(
            "GET",
            "/api/file/download-trajectory/{conversation_id}",
            FILES,
            "Download Trajectory",
        )
    },
    // ---- sidecars ----
    Operation {
        description: "The VS Code URL with its connection token.",
        query: &[
            q("base_url", vscode_base, "Where VS Code is reachable."),
            q("workspace_dir", workspace_dir, "The folder to open."),
        ],
        responses: &[
            ok(named::<VscodeUrlResponse>),
            R422,
            err(503, "VS Code is disabled"),
        ],
        ..op("GET", "/api/vscode/url", "VSCode", "Get Vscode Url")
    },
    Operation {
        responses: &[ok(vscode_status)],
        ..op("GET", "/api/vscode/status", "VSCode", "Get Vscode Status")
    },
    Operation {
        description: "The noVNC URL of the desktop; null while it does not run.",
        query: &[q(
            "base_url",
            desktop_base,
            "Where the desktop is reachable.",
        )],
        responses: &[
            ok(named::<DesktopUrlResponse>),
            R422,
            err(503, "The desktop is disabled"),
        ],
        ..op("GET", "/api/desktop/url", "Desktop", "Get Desktop Url")
    },
    // ---- websockets ----
    Operation {
        description: "WebSocket: the conversation's events as they happen (a `full_state` update first); text frames sent by the client are user messages that start a run.",
        query: &[SESSION_KEY, RESEND_ALL],
        responses: WEBSOCKET,
        ..op(
            "GET",
            "/sockets/events/{conversation_id}",
            SOCKETS,
            "Events Socket",
        )
    },
    Operation {
        description: "WebSocket: BashCommand and BashOutput events as REST returns them; text frames sent by the client are ExecuteBashRequests.",
        query: &[SESSION_KEY, RESEND_ALL],
        responses: WEBSOCKET,
        ..op("GET", "/sockets/bash-events", SOCKETS, "Bash Events Socket")
    },
];

/// The documentation of `(method, pattern)`.
pub fn find(method: &str, pattern: &str) -> Option<&'static Operation> {
    OPERATIONS
        .iter()
        .find(|o| o.method == method && o.pattern == pattern)
}
