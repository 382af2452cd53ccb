//! Integration tests, one module per area.

mod conversations;
mod foundation;
