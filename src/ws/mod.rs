//! WebSocket session actors (the only place that uses `actix-web-actors`, so a later switch to
//! another WebSocket crate stays local): the conversation event socket ([`events`]), the bash
//! events socket ([`bash_events`]) and the bounded outbound queue sessions write through
//! ([`outbound`]).

pub mod bash_events;
pub mod events;
pub mod outbound;
