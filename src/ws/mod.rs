//! WebSocket sessions. `actix-web-actors` is used only under this module, so a later switch to
//! another WebSocket crate stays local.

pub mod bash_events;
