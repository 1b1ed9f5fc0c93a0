//! Per-principal rate limits on the calls that change something (create,
//! start, pause): one principal's runaway script cannot flood the command
//! queue, and others are not slowed by it.

use super::error::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;

/// How many changes a principal may make: a sustained rate and a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// Checks principals against their `RateLimit`; `None` lets everything by.
#[derive(Clone, Debug, Default)]
pub struct ChangeLimiter {
    limiter: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl ChangeLimiter {
    pub fn new(limit: Option<RateLimit>) -> Self {
        Self {
            limiter: limit.map(|limit| {
                Arc::new(RateLimiter::keyed(
                    Quota::per_second(limit.per_second).allow_burst(limit.burst),
                ))
            }),
        }
    }

    /// Takes one change from `principal`'s allowance, or says how long to
    /// wait for the next.
    pub fn check(&self, principal: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&principal.to_owned())
            .map_err(|not_until| ApiError::RateLimited {
                principal: principal.to_owned(),
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })?;
        // Principals idle long enough to be back at a full allowance are
        // forgotten, so that the table does not grow with every name seen.
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        Ok(())
    }
}
