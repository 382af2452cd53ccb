//! Integration tests, one module per area.

mod compat;
mod files;
mod foundation;
mod process;
