//! Webhook delivery, the pure parts: Standard Webhooks signing ([`signing`]), the payload formats
//! ([`payload`]), and what to do after each attempt plus the retry schedule ([`delivery`]). The
//! reqwest-based [`http::ReqwestSender`] is the one real [`crate::ports::WebhookSender`].

pub mod delivery;
pub mod http;
pub mod payload;
pub mod signing;
