//! Integration tests, one module per area.

mod agent;
mod bash;
mod conversations;
mod files;
mod foundation;
mod llm_captures;
mod process;
mod tools;
