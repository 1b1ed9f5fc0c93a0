//! Cross-replica wake-ups over LISTEN/NOTIFY: one dedicated connection per
//! replica listens; notifications carry only a region name (a dispatcher
//! to run) or a command id (a completion), never data. Losing the
//! connection loses nothing: polling still delivers, and after every
//! (re)connect the handler is told to look at everything.

use crate::store::{Wakeup, WakeupHandler};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A command for the region in the payload was committed.
pub const REGION_CHANNEL: &str = "connector_control_region";
/// The command whose id is in the payload completed.
pub const COMPLETED_CHANNEL: &str = "connector_control_completed";
/// The replica whose id is in the payload started.
pub const REPLICA_CHANNEL: &str = "connector_control_replica";

const RETRY_START: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The channel and payload that carry `wakeup`; None for `All`, which is
/// never sent.
pub fn channel_of(wakeup: &Wakeup) -> Option<(&'static str, &str)> {
    match wakeup {
        Wakeup::Region(region) => Some((REGION_CHANNEL, region)),
        Wakeup::Completed(command_id) => Some((COMPLETED_CHANNEL, command_id)),
        Wakeup::Joined(replica_id) => Some((REPLICA_CHANNEL, replica_id)),
        Wakeup::All => None,
    }
}

/// Listens until `shutdown`, reconnecting with a capped backoff.
/// `check_every` is how often an idle connection is probed, so that one
/// silently cut (no RST) is noticed and replaced.
pub async fn run(
    mut config: tokio_postgres::Config,
    replica_id: String,
    handler: WakeupHandler,
    check_every: Duration,
    shutdown: CancellationToken,
) {
    // Named so that operators (and tests) can find it in pg_stat_activity.
    config.application_name(format!("connector-control listener {replica_id}"));
    let mut retry = RETRY_START;
    loop {
        let (listening_tx, mut listening) = tokio::sync::oneshot::channel();
        let began = tokio::time::Instant::now();
        let error = tokio::select! {
            _ = shutdown.cancelled() => return,
            error = listen(&config, &handler, check_every, listening_tx) => error,
        };
        // Back to a quick retry only after a connection that lasted: one
        // cut right after each LISTEN must not become a tight loop.
        if listening.try_recv().is_ok() && began.elapsed() >= check_every {
            retry = RETRY_START;
        }
        warn!(
            %error,
            retry_in = ?retry,
            "the wake-up listener lost its database connection; polling delivers until it is back"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// One connection's life: LISTEN, report a full wake-up, then forward
/// notifications until the connection fails. Returns why it ended.
async fn listen(
    config: &tokio_postgres::Config,
    handler: &WakeupHandler,
    check_every: Duration,
    listening: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Error {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(pair) => pair,
        Err(error) => return error.into(),
    };
    // The connection is driven here: notifications arrive as messages.
    let (messages_tx, mut messages) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    let wakeup = match notification.channel() {
                        REGION_CHANNEL => Wakeup::Region(notification.payload().to_owned()),
                        COMPLETED_CHANNEL => Wakeup::Completed(notification.payload().to_owned()),
                        REPLICA_CHANNEL => Wakeup::Joined(notification.payload().to_owned()),
                        _ => continue,
                    };
                    if messages_tx.send(Ok(wakeup)).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    let _ = messages_tx.send(Err(anyhow::Error::from(error)));
                    return;
                }
                None => {
                    let _ =
                        messages_tx.send(Err(anyhow::anyhow!("the server closed the connection")));
                    return;
                }
            }
        }
    });
    let error = forward(&client, &mut messages, handler, check_every, listening).await;
    driver.abort();
    match error {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

/// LISTENs, reports a full wake-up, then hands notifications to `handler`
/// and probes the connection while idle, until something fails.
async fn forward(
    client: &tokio_postgres::Client,
    messages: &mut mpsc::UnboundedReceiver<anyhow::Result<Wakeup>>,
    handler: &WakeupHandler,
    check_every: Duration,
    listening: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<std::convert::Infallible> {
    client
        .batch_execute(&format!(
            "LISTEN {REGION_CHANNEL}; LISTEN {COMPLETED_CHANNEL}; LISTEN {REPLICA_CHANNEL}"
        ))
        .await?;
    let _ = listening.send(());
    info!("listening for wake-ups from other replicas");
    // Whatever was notified while not listening is found by a full look.
    handler(Wakeup::All);
    let mut check = tokio::time::interval(check_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Some(Ok(wakeup)) => handler(wakeup),
                Some(Err(error)) => return Err(error),
                None => anyhow::bail!("the connection driver stopped"),
            },
            _ = check.tick() => {
                tokio::time::timeout(check_every, client.simple_query(""))
                    .await
                    .map_err(|_| anyhow::anyhow!("the connection stopped answering"))??;
            }
        }
    }
}
