//! Integration tests, one module per area.

mod agent;
mod auth;
mod bash;
mod compat;
mod conversations;
mod crash;
mod files;
mod foundation;
mod hostile;
mod journal;
mod limits;
mod llm_captures;
mod llm_faults;
mod load;
mod openapi;
mod process;
mod shutdown;
mod sockets;
mod tools;
mod webhooks;
