//! How many WatchConnectors streams may be open, and how many may read the
//! database at once: a viewer opening thousands of watches that never
//! read must not take this replica's memory, nor the connection pool that
//! starts and pauses need.

use super::error::ApiError;
use crate::auth::Principal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The caps, and the streams open now.
#[derive(Clone, Debug)]
pub struct WatchLimits {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    per_replica: usize,
    per_caller: usize,
    open: Mutex<Open>,
    /// Database reads of watches (snapshot pages, changes the feed no
    /// longer holds) at once: a few of the pool's connections, never all.
    reads: Arc<Semaphore>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_caller: HashMap<String, usize>,
}

/// A watch's response stream, which holds its slot: a stream that its
/// caller no longer reads counts against the caps until the caller resets
/// it or goes away, not only while the server still writes to it.
pub struct WatchStream<T> {
    pub(super) inner: tokio_stream::wrappers::ReceiverStream<T>,
    pub(super) _slot: WatchSlot,
}

impl<T> futures_util::Stream for WatchStream<T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// An open watch, counted until it is dropped.
#[derive(Debug)]
pub struct WatchSlot {
    inner: Arc<Inner>,
    caller: String,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.inner.open.lock().unwrap();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_caller.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.by_caller.remove(&self.caller);
            }
        }
    }
}

impl Default for WatchLimits {
    fn default() -> Self {
        Self::new(
            crate::defaults::MAX_WATCHES,
            crate::defaults::MAX_WATCHES_PER_CALLER,
            1,
        )
    }
}

impl WatchLimits {
    /// At most `per_replica` watches on this replica and `per_caller` for
    /// one caller; `reads` of them read the database at once.
    pub fn new(per_replica: usize, per_caller: usize, reads: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                per_replica: per_replica.max(1),
                per_caller: per_caller.max(1),
                open: Mutex::default(),
                reads: Arc::new(Semaphore::new(reads.max(1))),
            }),
        }
    }

    /// The database reads of `pool` connections that watches may use at
    /// once: a quarter, at least one.
    pub fn reads_for_pool(pool: usize) -> usize {
        (pool / 4).max(1)
    }

    /// Admits one more watch of `principal` (from `peer`): the caller is
    /// the principal, or, without an auth file (everyone `anonymous`), the
    /// peer's address.
    pub fn admit(&self, principal: &Principal, peer: &str) -> Result<WatchSlot, ApiError> {
        let caller = if principal.name == Principal::anonymous().name {
            let host = peer
                .parse::<std::net::SocketAddr>()
                .map_or_else(|_| peer.to_owned(), |addr| addr.ip().to_string());
            format!("address {host}")
        } else {
            format!("principal {}", principal.name)
        };
        let mut open = self.inner.open.lock().unwrap();
        if open.total >= self.inner.per_replica {
            return Err(ApiError::TooManyWatches {
                limit: self.inner.per_replica,
                scope: "this replica".to_owned(),
                flag: "--max-watches",
            });
        }
        let mine = open.by_caller.get(&caller).copied().unwrap_or(0);
        if mine >= self.inner.per_caller {
            return Err(ApiError::TooManyWatches {
                limit: self.inner.per_caller,
                scope: caller,
                flag: "--max-watches-per-caller",
            });
        }
        open.total += 1;
        *open.by_caller.entry(caller.clone()).or_insert(0) += 1;
        Ok(WatchSlot {
            inner: self.inner.clone(),
            caller,
        })
    }

    /// Waits for a turn to read the database for a watch.
    pub async fn read(&self) -> OwnedSemaphorePermit {
        self.inner
            .reads
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Watches open now.
    pub fn open(&self) -> usize {
        self.inner.open.lock().unwrap().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_capped_per_caller_and_per_replica() {
        let limits = WatchLimits::new(3, 2, 1);
        let ada = Principal::anonymous();
        let a1 = limits.admit(&ada, "10.0.0.1:1000").unwrap();
        let _a2 = limits.admit(&ada, "10.0.0.1:1001").unwrap();
        assert!(matches!(
            limits.admit(&ada, "10.0.0.1:1002"),
            Err(ApiError::TooManyWatches { limit: 2, .. })
        ));
        let _b1 = limits.admit(&ada, "10.0.0.2:1000").unwrap();
        assert!(matches!(
            limits.admit(&ada, "10.0.0.3:1000"),
            Err(ApiError::TooManyWatches { limit: 3, .. })
        ));
        drop(a1);
        assert_eq!(limits.open(), 2);
        assert!(limits.admit(&ada, "10.0.0.1:1003").is_ok());
    }
}
