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

/// The listener's own check, at every (re)connect, that a notification
/// from another session reaches it (through a transaction-pooling proxy it
/// does not: LISTEN stays on a server session the proxy hands to others).
pub const PROBE_CHANNEL: &str = "connector_control_probe";
/// How long the probe's notification may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections in a row on which the probe is not heard before the
/// listener gives up (one could be a moment's failover split).
const PROBES_BEFORE_GIVING_UP: u32 = 3;

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
    // Connections in a row on which the probe was not heard.
    let mut unheard = 0;
    loop {
        let (listening_tx, mut listening) = tokio::sync::oneshot::channel();
        let began = tokio::time::Instant::now();
        let ended = tokio::select! {
            _ = shutdown.cancelled() => return,
            ended = listen(&config, &handler, check_every, listening_tx) => ended,
        };
        let listened = listening.try_recv().is_ok();
        let error = match ended {
            Ended::Lost(error) => {
                if listened {
                    unheard = 0;
                }
                error
            }
            Ended::NotDelivered if unheard + 1 >= PROBES_BEFORE_GIVING_UP => {
                warn!(
                    "LISTEN/NOTIFY does not work through this database connection: a \
                     notification from another session never arrived, {PROBES_BEFORE_GIVING_UP} \
                     times (a transaction-pooling proxy such as PgBouncer? pass \
                     --transaction-pooling, or --poll-only). Replicas find each other's \
                     commands by polling (--poll-interval)"
                );
                return;
            }
            Ended::NotDelivered => {
                unheard += 1;
                anyhow::anyhow!("a notification from another session did not arrive")
            }
        };
        // Back to a quick retry only after a connection that lasted: one
        // cut right after each LISTEN must not become a tight loop.
        if listened && began.elapsed() >= check_every {
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

/// Why a listening connection ended.
enum Ended {
    Lost(anyhow::Error),
    /// The connection works but another session's notification never
    /// reached it: listening there is pointless.
    NotDelivered,
}

/// What the connection heard.
enum Heard {
    Wakeup(Wakeup),
    Probe(String),
}

/// One connection's life: LISTEN, check that notifications arrive, report
/// a full wake-up, then forward notifications until the connection fails.
/// Returns why it ended.
async fn listen(
    config: &tokio_postgres::Config,
    handler: &WakeupHandler,
    check_every: Duration,
    listening: tokio::sync::oneshot::Sender<()>,
) -> Ended {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(pair) => pair,
        Err(error) => return Ended::Lost(error.into()),
    };
    // The connection is driven here: notifications arrive as messages.
    let (messages_tx, mut messages) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    let payload = notification.payload().to_owned();
                    let heard = match notification.channel() {
                        REGION_CHANNEL => Heard::Wakeup(Wakeup::Region(payload)),
                        COMPLETED_CHANNEL => Heard::Wakeup(Wakeup::Completed(payload)),
                        REPLICA_CHANNEL => Heard::Wakeup(Wakeup::Joined(payload)),
                        PROBE_CHANNEL => Heard::Probe(payload),
                        _ => continue,
                    };
                    if messages_tx.send(Ok(heard)).is_err() {
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
    let ended = forward(
        config,
        &client,
        &mut messages,
        handler,
        check_every,
        listening,
    )
    .await;
    driver.abort();
    ended
}

/// LISTENs, checks that another session's notification arrives, reports a
/// full wake-up, then hands notifications to `handler` and probes the
/// connection while idle, until something fails.
async fn forward(
    config: &tokio_postgres::Config,
    client: &tokio_postgres::Client,
    messages: &mut mpsc::UnboundedReceiver<anyhow::Result<Heard>>,
    handler: &WakeupHandler,
    check_every: Duration,
    listening: tokio::sync::oneshot::Sender<()>,
) -> Ended {
    match listen_and_probe(config, client, messages, handler).await {
        Ok(true) => {}
        Ok(false) => return Ended::NotDelivered,
        Err(error) => return Ended::Lost(error),
    }
    let _ = listening.send(());
    info!("listening for wake-ups from other replicas");
    match notify_until_failure(client, messages, handler, check_every).await {
        Ok(never) => match never {},
        Err(error) => Ended::Lost(error),
    }
}

/// LISTEN, then NOTIFY a fresh token on the probe channel from a session
/// of its own: true once it arrives, false if it does not within
/// `PROBE_TIMEOUT` while this connection still answers. Wake-ups heard
/// meanwhile are handed on.
async fn listen_and_probe(
    config: &tokio_postgres::Config,
    client: &tokio_postgres::Client,
    messages: &mut mpsc::UnboundedReceiver<anyhow::Result<Heard>>,
    handler: &WakeupHandler,
) -> anyhow::Result<bool> {
    let (notifier, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    // Both on one server, or the probe proves nothing (a multi-host URL or
    // a virtual IP may lead them apart during a failover).
    let (listening_on, notifying_on) = tokio::try_join!(server_of(client), server_of(&notifier))?;
    anyhow::ensure!(
        listening_on == notifying_on,
        "the probe's session reached another server ({notifying_on}, not {listening_on})"
    );
    client
        .batch_execute(&format!(
            "LISTEN {REGION_CHANNEL}; LISTEN {COMPLETED_CHANNEL}; LISTEN {REPLICA_CHANNEL}; \
             LISTEN {PROBE_CHANNEL}"
        ))
        .await?;
    let token = uuid::Uuid::new_v4().simple().to_string();
    notifier
        .batch_execute(&format!("NOTIFY {PROBE_CHANNEL}, '{token}'"))
        .await?;
    drop(notifier);
    let _ = driver.await;
    let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, messages.recv()).await {
            Ok(Some(Ok(Heard::Probe(payload)))) if payload == token => return Ok(true),
            Ok(Some(Ok(Heard::Probe(_)))) => {}
            Ok(Some(Ok(Heard::Wakeup(wakeup)))) => handler(wakeup),
            Ok(Some(Err(error))) => return Err(error),
            Ok(None) => anyhow::bail!("the connection driver stopped"),
            Err(_) => {
                // Not a slow or dead connection: it answers.
                tokio::time::timeout(PROBE_TIMEOUT, client.simple_query(""))
                    .await
                    .map_err(|_| anyhow::anyhow!("the connection stopped answering"))??;
                // Nor one that heard it just now.
                while let Ok(heard) = messages.try_recv() {
                    match heard? {
                        Heard::Probe(payload) if payload == token => return Ok(true),
                        Heard::Probe(_) => {}
                        Heard::Wakeup(wakeup) => handler(wakeup),
                    }
                }
                return Ok(false);
            }
        }
    }
}

/// Which server a session is on: its address, port and start time.
async fn server_of(client: &tokio_postgres::Client) -> anyhow::Result<String> {
    let rows = client
        .simple_query(
            "SELECT coalesce(host(inet_server_addr()), 'local') || ':' \
             || coalesce(inet_server_port(), 0) || ' started ' || pg_postmaster_start_time()",
        )
        .await?;
    rows.iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("no answer naming the server"))
}

/// Reports a full wake-up, then hands notifications to `handler` and probes
/// the connection while idle, until something fails.
async fn notify_until_failure(
    client: &tokio_postgres::Client,
    messages: &mut mpsc::UnboundedReceiver<anyhow::Result<Heard>>,
    handler: &WakeupHandler,
    check_every: Duration,
) -> anyhow::Result<std::convert::Infallible> {
    // Whatever was notified while not listening is found by a full look.
    handler(Wakeup::All);
    let mut check = tokio::time::interval(check_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Some(Ok(Heard::Wakeup(wakeup))) => handler(wakeup),
                Some(Ok(Heard::Probe(_))) => {}
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
