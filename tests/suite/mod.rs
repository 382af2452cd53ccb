//! Integration tests, one module per area.

mod bash;
mod foundation;
