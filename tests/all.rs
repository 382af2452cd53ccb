//! The one integration test binary: every test starts a real server on 127.0.0.1:0.

mod common;
mod suite;
