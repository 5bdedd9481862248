//! Shared rate-limit state: the [`RateLimiter`] port is declared with the rules it takes, in
//! [`crate::rate_limit`], and named here with the other ports.

pub use crate::rate_limit::RateLimiter;
