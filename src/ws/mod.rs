//! WebSocket session actors (the only place that uses `actix-web-actors`): the conversation
//! event socket ([`events`]) and the bounded outbound queue sessions write through ([`outbound`]).

pub mod events;
pub mod outbound;
