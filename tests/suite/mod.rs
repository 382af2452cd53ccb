//! Integration tests, one module per area.

mod files;
mod foundation;
mod process;
mod sockets;
mod webhooks;
