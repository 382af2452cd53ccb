//! The workspace operations behind `/api/file` and `/api/git`, as pure cores without actix types:
//! the reference's path and error-text rules ([`pypath`]), download headers and byte ranges
//! ([`download`]), streamed atomic uploads ([`upload`]), the trajectory zip ([`trajectory`]) and
//! git changes and diffs ([`git`]).

pub mod download;
pub mod git;
#[cfg(test)]
mod proptests;
pub mod pypath;
pub mod trajectory;
pub mod upload;
