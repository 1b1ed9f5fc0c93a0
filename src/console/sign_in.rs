//! Signing in safely: where a sign-in may send the browser afterwards (a
//! path on this console, never another site: OWASP's unvalidated
//! redirects), and how fast one address may try tokens (a brute force is
//! slowed to a trickle, and answered without checking the token).

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sign-in attempts one address may make in a burst, then one per
/// `PER_ADDRESS_EVERY`: a person mistyping a token, or a team behind one
/// address signing in (a sign-in lasts hours), is not slowed down; a
/// script trying tokens gets twenty a minute. There is no limit over all
/// addresses: one an attacker could use up would lock every operator out.
const PER_ADDRESS_BURST: u32 = 20;
const PER_ADDRESS_EVERY: Duration = Duration::from_secs(3);
/// Addresses remembered before idle ones are forgotten (at most once per
/// `FORGET_EVERY`, so that a flood of addresses costs no scan per try).
const MAX_ADDRESSES: usize = 100_000;
const FORGET_EVERY: Duration = Duration::from_secs(10);

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

/// How fast sign-ins may be tried, per address.
#[derive(Debug)]
pub struct Throttle {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    forgotten: Mutex<Instant>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            per_address: RateLimiter::keyed(
                Quota::with_period(PER_ADDRESS_EVERY)
                    .expect("a period")
                    .allow_burst(NonZeroU32::new(PER_ADDRESS_BURST).expect("non-zero")),
            ),
            forgotten: Mutex::new(Instant::now()),
        }
    }
}

/// What one attacker is taken to hold: an IPv4 address, or an IPv6 /64
/// (a host has a whole /64 to pick addresses from).
fn sender(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

impl Throttle {
    /// Takes one attempt from `address`'s allowance, or says how long to
    /// wait. Every attempt counts, whatever its outcome: attempts made at
    /// once cannot all slip through before their failures are known.
    pub fn attempt(&self, address: IpAddr) -> Result<(), Duration> {
        if self.per_address.len() > MAX_ADDRESSES
            && let Ok(mut forgotten) = self.forgotten.try_lock()
            && forgotten.elapsed() >= FORGET_EVERY
        {
            self.per_address.retain_recent();
            *forgotten = Instant::now();
        }
        let clock = DefaultClock::default();
        self.per_address
            .check_key(&sender(address))
            .map_err(|not_until| {
                not_until
                    .wait_time_from(clock.now())
                    .max(Duration::from_secs(1))
            })
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
        // Someone else is not held up by it, not even after every other
        // address of the attacker's.
        for i in 0..=255u8 {
            let _ = throttle.attempt(IpAddr::from([10, 9, 8, i]));
        }
        assert!(throttle.attempt("10.1.1.1".parse().unwrap()).is_ok());
        // An IPv6 host's /64 is one sender.
        let v6 = |last: u16| IpAddr::from([0xfd00, 0, 0, 1, 0, 0, 0, last]);
        let allowed = (0..1_000)
            .filter(|i| throttle.attempt(v6(*i)).is_ok())
            .count();
        assert_eq!(allowed, PER_ADDRESS_BURST as usize);
    }
}
