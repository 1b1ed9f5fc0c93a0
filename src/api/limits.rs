//! Per-principal rate limits on the calls that change something (create,
//! start, pause). They protect the database and the command queue from a
//! runaway caller (a retry loop, a script gone wrong), not from a burst of
//! legitimate changes: a registration job creating a few hundred
//! connectors, or an incident script pausing thirty, stays well within
//! them. Each role has its own allowance, because services that register
//! connectors (admin) are not on-call people (operator). A call takes one
//! change from its principal's allowance, whatever it changes: a batch
//! call counts as one. Reads are never limited.

use crate::auth::{Principal, Role};
use crate::defaults;
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

impl RateLimit {
    /// `per_second` changes a second with bursts of `burst`; None (no
    /// limit) when `per_second` is 0. A burst of 0 means `per_second`.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let per_second = NonZeroU32::new(per_second)?;
        Some(RateLimit {
            per_second,
            burst: NonZeroU32::new(burst).unwrap_or(per_second),
        })
    }
}

/// The allowance of each role that may change something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    pub operator: Option<RateLimit>,
    pub admin: Option<RateLimit>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            operator: RateLimit::new(defaults::OPERATOR_RATE_LIMIT, defaults::OPERATOR_RATE_BURST),
            admin: RateLimit::new(defaults::ADMIN_RATE_LIMIT, defaults::ADMIN_RATE_BURST),
        }
    }
}

impl RateLimits {
    /// No limit for anyone.
    pub fn off() -> Self {
        Self {
            operator: None,
            admin: None,
        }
    }
}

/// A call over its principal's allowance: who, under which limit, and
/// when the next call may come.
#[derive(Debug, thiserror::Error)]
#[error("{principal} is over its rate limit")]
pub struct RateLimited {
    pub principal: String,
    pub role: &'static str,
    pub limit: RateLimit,
    pub retry_after: std::time::Duration,
}

/// One role's limit and its principals' allowances.
#[derive(Debug)]
struct RoleLimiter {
    limit: RateLimit,
    limiter: DefaultKeyedRateLimiter<String>,
}

impl RoleLimiter {
    fn new(limit: Option<RateLimit>) -> Option<Arc<Self>> {
        limit.map(|limit| {
            Arc::new(RoleLimiter {
                limit,
                limiter: RateLimiter::keyed(
                    Quota::per_second(limit.per_second).allow_burst(limit.burst),
                ),
            })
        })
    }
}

/// Limits the mutating calls (create, start, pause, ...) of each
/// principal to its role's `RateLimit`.
#[derive(Clone, Debug, Default)]
pub struct MutationLimiter {
    operator: Option<Arc<RoleLimiter>>,
    admin: Option<Arc<RoleLimiter>>,
}

impl MutationLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            operator: RoleLimiter::new(limits.operator),
            admin: RoleLimiter::new(limits.admin),
        }
    }

    /// Takes one change from `principal`'s allowance, or says how long to
    /// wait for the next.
    pub fn check(&self, principal: &Principal) -> Result<(), RateLimited> {
        let role = if principal.unrestricted {
            Role::Admin
        } else {
            principal.role
        };
        let limiter = match role {
            Role::Operator => &self.operator,
            Role::Admin => &self.admin,
            // They change nothing (their permission check refused it).
            Role::Viewer | Role::Agent => &None,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter
            .limiter
            .check_key(&principal.name)
            .map_err(|not_until| RateLimited {
                principal: principal.name.clone(),
                role: role.as_str(),
                limit: limiter.limit,
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })?;
        // Principals idle long enough to be back at a full allowance are
        // forgotten, so that the table does not grow with every name seen.
        if limiter.limiter.len() > 10_000 {
            limiter.limiter.retain_recent();
        }
        Ok(())
    }
}
