//! Signing in safely: where a sign-in may send the browser afterwards (a
//! path on this console, never another site: OWASP's unvalidated
//! redirects), and how fast one address may try tokens (a brute force is
//! slowed to a trickle, and answered without checking the token).

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// Sign-in attempts one address may make in a burst, then one per
/// `PER_ADDRESS_EVERY`: a person mistyping a token is never slowed down,
/// a script trying tokens gets ten a minute.
const PER_ADDRESS_BURST: u32 = 10;
const PER_ADDRESS_EVERY: Duration = Duration::from_secs(6);
/// All addresses together (many addresses trying tokens at once).
const OVERALL_BURST: u32 = 200;
const OVERALL_PER_SECOND: u32 = 20;
/// Addresses remembered at most before idle ones are forgotten.
const MAX_ADDRESSES: usize = 100_000;

/// Where a sign-in may send the browser: `next` if it is a path on this
/// console, else `/`. A path starts with one `/` (not `//` nor `/\`, which
/// browsers read as another host), holds no control or whitespace
/// character and no `\` (browsers drop tabs and newlines from a URL, so
/// `/\t/evil.example` becomes `//evil.example`), and non-ASCII letters
/// are percent-encoded so that the `Location` header can always carry it.
pub fn safe_next(next: &str) -> String {
    let mut chars = next.chars();
    let path_only = chars.next() == Some('/')
        && !matches!(chars.next(), Some('/' | '\\'))
        && !next
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
        && !next.chars().any(crate::domain::validate::deceptive);
    if !path_only {
        return "/".to_owned();
    }
    let mut safe = String::with_capacity(next.len());
    for c in next.chars() {
        if c.is_ascii() {
            safe.push(c);
        } else {
            let mut bytes = [0; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                safe.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    safe
}

/// How fast sign-ins may be tried, per address and overall.
#[derive(Debug)]
pub struct Throttle {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    overall: DefaultDirectRateLimiter,
}

impl Default for Throttle {
    fn default() -> Self {
        let burst = |n: u32| NonZeroU32::new(n).expect("non-zero");
        Self {
            per_address: RateLimiter::keyed(
                Quota::with_period(PER_ADDRESS_EVERY)
                    .expect("a period")
                    .allow_burst(burst(PER_ADDRESS_BURST)),
            ),
            overall: RateLimiter::direct(
                Quota::per_second(burst(OVERALL_PER_SECOND)).allow_burst(burst(OVERALL_BURST)),
            ),
        }
    }
}

impl Throttle {
    /// Takes one attempt from `address`'s allowance (and everyone's), or
    /// says how long to wait. Every attempt counts, whatever its outcome:
    /// attempts made at once cannot all slip through before their
    /// failures are known.
    pub fn attempt(&self, address: IpAddr) -> Result<(), Duration> {
        if self.per_address.len() > MAX_ADDRESSES {
            self.per_address.retain_recent();
        }
        let clock = DefaultClock::default();
        let wait = |not_until: governor::NotUntil<_>| {
            not_until
                .wait_time_from(clock.now())
                .max(Duration::from_secs(1))
        };
        self.per_address.check_key(&address).map_err(wait)?;
        self.overall.check().map_err(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_path_of_this_console_is_a_place_to_go() {
        assert_eq!(safe_next("/?q=users-ap"), "/?q=users-ap");
        assert_eq!(safe_next("/connectors/c1"), "/connectors/c1");
        for other_site in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/\u{b}/evil.example",
            "https://evil.example",
            "evil.example",
            "/a\\b",
            "/a b",
            "/\u{202E}x",
            "",
        ] {
            assert_eq!(safe_next(other_site), "/", "{other_site:?}");
        }
        assert_eq!(safe_next("/?q=订单"), "/?q=%E8%AE%A2%E5%8D%95");
    }

    #[test]
    fn an_address_trying_tokens_is_slowed_to_a_trickle() {
        let throttle = Throttle::default();
        let attacker: IpAddr = "10.9.9.9".parse().unwrap();
        let allowed = (0..1_000)
            .filter(|_| throttle.attempt(attacker).is_ok())
            .count();
        assert_eq!(allowed, PER_ADDRESS_BURST as usize);
        let wait = throttle.attempt(attacker).unwrap_err();
        assert!(wait >= Duration::from_secs(1));
        // Someone else is not held up by it.
        assert!(throttle.attempt("10.1.1.1".parse().unwrap()).is_ok());
    }
}
