//! `/api/file`: multipart upload streamed to disk, file download with the reference's headers and
//! byte ranges, and the trajectory zip of a conversation (API.md §5).

use std::collections::VecDeque;
use std::fs::{File, Metadata};
use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use actix_multipart::{Multipart, MultipartError};
use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::config::Config;
use crate::conversation::RegistryHandle;
use crate::error::{ApiError, ValidationItem};
use crate::http::validate::{QueryPairs, path_uuid};
use crate::loc;
use crate::workspace::download::{self, CHUNK_SIZE, RangeError};
use crate::workspace::pypath::{is_absent_error, os_error_text, pure_path, url_tail};
use crate::workspace::trajectory::{self, TrajectoryError};
use crate::workspace::upload::UploadSink;

const UPLOAD_PREFIX: &str = "/api/file/upload/";
const DOWNLOAD_PREFIX: &str = "/api/file/download/";
/// Largest non-file form field accepted (the reference's multipart parser limit).
const MAX_TEXT_PART: usize = 1024 * 1024;
/// The media type of every download.
const OCTET_STREAM: &str = "application/octet-stream";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/file/upload/{path:.*}", web::post().to(upload))
        .route("/api/file/download/{path:.*}", web::get().to(download))
        .route(
            "/api/file/download-trajectory/{conversation_id}",
            web::get().to(download_trajectory),
        );
}

/// The `{path}` tail of the request, decoded as the reference decodes it.
fn tail(req: &HttpRequest, prefix: &str) -> String {
    url_tail(req.uri().path(), prefix)
        .or_else(|| req.match_info().get("path").map(str::to_string))
        .unwrap_or_default()
}

fn blocking_failed(e: actix_web::error::BlockingError) -> ApiError {
    ApiError::internal(e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Upload

/// What the last form field named `file` turned out to be (the last one wins, as in the reference).
enum FilePart {
    /// A file part streamed to a temporary file.
    Written(UploadSink),
    /// A file part that could not be written; the text after "Failed to upload file: ".
    Failed(String),
    /// A plain form field: not a file.
    Text(String),
}

fn missing_file() -> ApiError {
    ApiError::validation(ValidationItem::new(
        "missing",
        loc!["body", "file"],
        "Field required",
        Value::Null,
    ))
}

fn not_a_file(text: String) -> ApiError {
    ApiError::validation(
        ValidationItem::new(
            "value_error",
            loc!["body", "file"],
            "Value error, Expected UploadFile, received: <class 'str'>",
            Value::String(text),
        )
        .with_ctx(json!({"error": {}})),
    )
}

fn upload_failed(msg: &str) -> ApiError {
    ApiError::http_5xx(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("Failed to upload file: {msg}"),
    )
}

/// Reads the field to its end, discarding the bytes.
async fn drain(field: &mut actix_multipart::Field) -> Result<(), MultipartError> {
    while let Some(chunk) = field.next().await {
        chunk?;
    }
    Ok(())
}

/// Streams one file part into a new [`UploadSink`]; a refusal is remembered, and the rest of the
/// part is drained so that the whole form is read before answering.
async fn receive_file(
    field: &mut actix_multipart::Field,
    dest: &Result<PathBuf, String>,
) -> Result<FilePart, MultipartError> {
    let dest = match dest {
        Ok(p) => p.clone(),
        Err(msg) => {
            drain(field).await?;
            return Ok(FilePart::Failed(msg.clone()));
        }
    };
    let created = web::block(move || UploadSink::create(&dest)).await;
    let mut sink = match created {
        Ok(Ok(sink)) => sink,
        Ok(Err(msg)) => {
            drain(field).await?;
            return Ok(FilePart::Failed(msg));
        }
        Err(e) => {
            drain(field).await?;
            return Ok(FilePart::Failed(e.to_string()));
        }
    };
    while let Some(chunk) = field.next().await {
        let chunk = chunk?;
        if let Err(msg) = sink.write(&chunk).await {
            drop(sink);
            drain(field).await?;
            return Ok(FilePart::Failed(msg));
        }
    }
    Ok(FilePart::Written(sink))
}

async fn receive_text(
    field: &mut actix_multipart::Field,
) -> Result<Result<String, ApiError>, MultipartError> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > MAX_TEXT_PART {
            drain(field).await?;
            return Ok(Err(ApiError::client(
                StatusCode::BAD_REQUEST,
                "Part exceeded maximum size of 1024KB.",
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Ok(String::from_utf8_lossy(&buf).into_owned()))
}

/// `POST /api/file/upload/{path}`: multipart with a part named `file`, written without holding
/// it in memory. The whole form is read before answering, so a missing part is a 422 even when
/// the path is refused.
async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    cfg: web::Data<Config>,
) -> Result<HttpResponse, ApiError> {
    let path = pure_path(&tail(&req, UPLOAD_PREFIX));
    let dest: Result<PathBuf, String> = if path.is_absolute() {
        Ok(path)
    } else {
        Err("400: Path must be absolute".to_string())
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();

    if essence == "application/x-www-form-urlencoded" {
        let mut body = web::BytesMut::new();
        let mut payload = payload;
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::client(StatusCode::BAD_REQUEST, e.to_string()))?;
            if body.len() + chunk.len() > cfg.max_body_bytes {
                return Err(ApiError::client(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large",
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let form = QueryPairs::parse(&String::from_utf8_lossy(&body));
        return Err(match form.get("file") {
            Some(text) => not_a_file(text.to_string()),
            None => missing_file(),
        });
    }
    if essence != "multipart/form-data" {
        return Err(missing_file());
    }

    let mut form = Multipart::new(req.headers(), payload);
    let mut last: Option<FilePart> = None;
    let mut text_error: Option<ApiError> = None;
    while let Some(item) = form.next().await {
        let mut field = match item {
            Ok(f) => f,
            Err(MultipartError::BoundaryMissing) => {
                return Err(ApiError::client(
                    StatusCode::BAD_REQUEST,
                    "Missing boundary in multipart.",
                ));
            }
            Err(_) => break,
        };
        if field.name() != Some("file") {
            if drain(&mut field).await.is_err() {
                break;
            }
            continue;
        }
        let is_file = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .is_some();
        if is_file {
            // A new part replaces the previous one (its temporary file is removed on drop).
            last = None;
            match receive_file(&mut field, &dest).await {
                Ok(part) => last = Some(part),
                Err(_) => break,
            }
        } else {
            last = None;
            match receive_text(&mut field).await {
                Ok(Ok(text)) => last = Some(FilePart::Text(text)),
                Ok(Err(e)) => text_error = Some(e),
                Err(_) => break,
            }
        }
    }
    if let Some(e) = text_error {
        return Err(e);
    }
    match last {
        None => Err(missing_file()),
        Some(FilePart::Text(text)) => Err(not_a_file(text)),
        Some(FilePart::Failed(msg)) => Err(upload_failed(&msg)),
        Some(FilePart::Written(sink)) => {
            sink.commit().await.map_err(|msg| upload_failed(&msg))?;
            Ok(HttpResponse::Ok().json(json!({"success": true})))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Download

/// One piece of a download body: literal bytes, or `len` bytes of the file from `start`.
enum Segment {
    Literal(Bytes),
    File { start: u64, len: u64 },
}

struct BodyState {
    file: tokio::fs::File,
    segments: VecDeque<Segment>,
    /// Bytes still to read from the file segment in progress.
    remaining: u64,
}

/// Streams the segments, reading the file [`CHUNK_SIZE`] bytes at a time.
fn body_stream(
    file: File,
    segments: Vec<Segment>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let state = BodyState {
        file: tokio::fs::File::from_std(file),
        segments: segments.into(),
        remaining: 0,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.remaining > 0 {
                let want = st.remaining.min(CHUNK_SIZE as u64) as usize;
                let mut buf = vec![0u8; want];
                return match st.file.read(&mut buf).await {
                    Ok(0) => Some((
                        Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                        st.stop(),
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        st.remaining -= n as u64;
                        Some((Ok(Bytes::from(buf)), st))
                    }
                    Err(e) => Some((Err(e), st.stop())),
                };
            }
            match st.segments.pop_front()? {
                Segment::Literal(b) => return Some((Ok(b), st)),
                Segment::File { start, len } => {
                    if let Err(e) = st.file.seek(SeekFrom::Start(start)).await {
                        return Some((Err(e), st.stop()));
                    }
                    st.remaining = len;
                }
            }
        }
    })
}

impl BodyState {
    /// After an error nothing more is sent.
    fn stop(mut self) -> Self {
        self.segments.clear();
        self.remaining = 0;
        self
    }
}

fn plain_text(status: StatusCode, text: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(text)
}

/// The reference's file response: octet-stream with disposition, length, etag, last-modified,
/// and `Range` / `If-Range` support (206 single or multipart ranges, 400 / 416 refusals).
pub fn file_response(
    req: &HttpRequest,
    file: File,
    meta: &Metadata,
    filename: &str,
) -> HttpResponse {
    let size = meta.len();
    let etag = download::etag(meta.mtime(), meta.mtime_nsec(), size);
    let last_modified = download::http_date(meta.mtime());
    let disposition = download::content_disposition(filename);

    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let if_range = req
        .headers()
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok());
    let use_range = match (range, if_range) {
        (None, _) => None,
        (Some(r), Some(cond)) if cond == etag || cond == last_modified => Some(r),
        (Some(_), Some(_)) => None,
        (Some(r), None) => Some(r),
    };

    let mut builder = HttpResponse::Ok();
    let (segments, length) = match use_range.map(|r| download::parse_range(r, size)) {
        None => (
            vec![Segment::File {
                start: 0,
                len: size,
            }],
            size,
        ),
        Some(Err(RangeError::Malformed(text))) => return plain_text(StatusCode::BAD_REQUEST, text),
        Some(Err(RangeError::NotSatisfiable)) => {
            let mut r = plain_text(StatusCode::RANGE_NOT_SATISFIABLE, "");
            if let Ok(v) = HeaderValue::from_str(&format!("*/{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        Some(Ok(ranges)) if ranges.len() == 1 => {
            let (start, end) = ranges[0];
            builder.status(StatusCode::PARTIAL_CONTENT);
            builder.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{size}", end - 1),
            ));
            (
                vec![Segment::File {
                    start,
                    len: end - start,
                }],
                end - start,
            )
        }
        Some(Ok(ranges)) => {
            let boundary: String = (0..13)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            let mut segments = Vec::new();
            let mut length = 0u64;
            for (start, end) in ranges {
                let head =
                    download::multipart_part_header(&boundary, OCTET_STREAM, start, end, size);
                length += head.len() as u64 + (end - start) + 1;
                segments.push(Segment::Literal(Bytes::from(head)));
                segments.push(Segment::File {
                    start,
                    len: end - start,
                });
                segments.push(Segment::Literal(Bytes::from_static(b"\n")));
            }
            let trailer = download::multipart_trailer(&boundary);
            length += trailer.len() as u64;
            segments.push(Segment::Literal(Bytes::from(trailer)));
            builder.status(StatusCode::PARTIAL_CONTENT);
            let mut r = builder
                .insert_header((header::ACCEPT_RANGES, "bytes"))
                .insert_header((header::CONTENT_DISPOSITION, disposition))
                .insert_header((header::LAST_MODIFIED, last_modified))
                .insert_header((header::ETAG, etag))
                .body(SizedStream::new(length, body_stream(file, segments)));
            if let Ok(v) =
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
            {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            return r;
        }
    };
    builder
        .insert_header((header::CONTENT_TYPE, OCTET_STREAM))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .insert_header((header::LAST_MODIFIED, last_modified))
        .insert_header((header::ETAG, etag))
        .body(SizedStream::new(length, body_stream(file, segments)))
}

/// Opens a file for download with the reference's refusals. Blocking.
fn open_for_download(path: &Path) -> Result<(File, Metadata), ApiError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if is_absent_error(&e) => {
            return Err(ApiError::client(StatusCode::NOT_FOUND, "File not found"));
        }
        Err(e) => return Err(ApiError::internal(os_error_text(&e, Some(path)))),
    };
    if !meta.is_file() {
        return Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            "Path is not a file",
        ));
    }
    let file = File::open(path).map_err(|e| ApiError::internal(os_error_text(&e, Some(path))))?;
    Ok((file, meta))
}

/// `GET /api/file/download/{path}`.
async fn download(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let path = pure_path(&tail(&req, DOWNLOAD_PREFIX));
    if !path.is_absolute() {
        return Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            "Path must be absolute",
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (file, meta) = web::block(move || open_for_download(&path))
        .await
        .map_err(blocking_failed)??;
    Ok(file_response(&req, file, &meta, &name))
}

/// `GET /api/file/download-trajectory/{conversation_id}`: the conversation directory as a zip.
async fn download_trajectory(
    req: HttpRequest,
    cfg: web::Data<Config>,
    reg: web::Data<RegistryHandle>,
) -> Result<HttpResponse, ApiError> {
    let raw = req.match_info().get("conversation_id").unwrap_or("");
    let id = path_uuid(raw, "conversation_id")?;
    // a live conversation writes its event files shortly after acknowledging them
    if let Some(h) = reg.get(id).await? {
        h.settle_files().await?;
    }
    let hex = id.simple().to_string();
    let dir = cfg.conversations_path.join(&hex);
    let zip_path = cfg.conversations_path.join(format!("{hex}.zip"));
    let built = web::block(move || {
        let file = trajectory::build(&dir)?;
        let meta = file.metadata()?;
        Ok::<_, TrajectoryError>((file, meta))
    })
    .await
    .map_err(blocking_failed)?;
    match built {
        Ok((file, meta)) => Ok(file_response(&req, file, &meta, &format!("{hex}.zip"))),
        Err(TrajectoryError::Missing) => Err(ApiError::internal(format!(
            "File at path {} does not exist.",
            zip_path.display()
        ))),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}
