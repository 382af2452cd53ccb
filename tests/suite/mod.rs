//! Integration tests, one module per area.

mod auth;
mod bash;
mod conversations;
mod files;
mod foundation;
mod hostile;
mod process;
mod shutdown;
mod tools;
