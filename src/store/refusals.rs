//! The audit trail's record of refused calls, bounded: identical refusals
//! (same principal, action, outcome and reason) within a window are one
//! event recorded at once and one more with the count
//! (`domain::RefusalAggregator`), so that a flood of denied calls costs a
//! few rows, and another principal's refusals and every change made are
//! still recorded as they happen.

use super::Store;
use crate::domain::{NewAuditEvent, RefusalAggregator};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Shared by every service that records refusals; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct RefusalLog {
    aggregator: Arc<Mutex<RefusalAggregator>>,
}

impl RefusalLog {
    /// Records `event` now if it is the first of its kind in the window;
    /// otherwise it is counted into the window's summary.
    pub async fn record<S: Store>(&self, store: &S, event: NewAuditEvent) {
        let now = chrono::Utc::now();
        let admitted = self.aggregator.lock().unwrap().admit(event, now);
        if let Some(event) = admitted
            && let Err(error) = store.append_audit(&event).await
        {
            warn!(%error, "recording a refused call in the audit trail failed");
            self.aggregator.lock().unwrap().forget(&event);
        }
    }

    /// Writes the counted refusals once per `window`, and a last time when
    /// `stop` is cancelled.
    pub fn spawn_flush<S: Store>(
        &self,
        store: S,
        window: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(window);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                let last = tokio::select! {
                    _ = stop.cancelled() => true,
                    _ = tick.tick() => false,
                };
                log.flush(&store).await;
                if last {
                    return;
                }
            }
        })
    }

    async fn flush<S: Store>(&self, store: &S) {
        let summaries = self.aggregator.lock().unwrap().drain();
        for summary in summaries {
            if let Err(error) = store.append_audit(&summary).await {
                warn!(%error, count = summary.count,
                      "recording repeated refusals in the audit trail failed");
            }
        }
    }
}
