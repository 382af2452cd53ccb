//! Integration tests, one module per area.

mod bash;
mod files;
mod foundation;
mod process;
mod tools;
