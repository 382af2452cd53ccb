//! Integration tests, one module per area.

mod bash;
mod compat;
mod conversations;
mod files;
mod foundation;
mod openapi;
mod process;
mod sockets;
mod tools;
mod webhooks;
