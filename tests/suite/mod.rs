//! Integration tests, one module per area.

mod foundation;
mod process;
