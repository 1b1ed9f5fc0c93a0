//! WatchConnectors: a snapshot of the matching connectors, then every
//! change that makes one enter, change within or leave the filter, in
//! commit order, read from this replica's change feed (`fleet::feed`).

use super::caller::actor;
use super::connector_api::ConnectorApi;
use super::error::ApiError;
use super::views::connector_view;
use super::{convert, watch_limits};
use crate::auth::{self, Permission};
use crate::domain::watch::{Seen, seen};
use crate::domain::{Cursor, PageTokenCodec, PageTokenError, SearchFilter};
use crate::fleet::feed::{Feed, FeedItem, read_changes};
use crate::proto::v1;
use crate::store::{FleetStore, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};
use tracing::Instrument;

/// The resume token's cursor name: the position is its id.
const TOKEN_NAME: &str = "watch";
/// Connectors per snapshot page.
const SNAPSHOT_PAGE: usize = 500;
/// Changes handled per step.
const STEP: usize = 512;
/// A PROGRESS event at most this often, when only unmatched changes came.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// A validated WatchConnectors request.
struct WatchQuery {
    filter: SearchFilter,
    /// Where to resume; None starts with a snapshot.
    resume_after: Option<i64>,
}

/// Refuses a resume token whose changes are no longer kept, before the
/// stream begins (RESUME_TOKEN_EXPIRED as the call's status).
async fn check_resumable<S: Store>(store: &S, query: &WatchQuery) -> Result<(), ApiError> {
    if let Some(after) = query.resume_after {
        store.changes_after(after, 0).await?;
    }
    Ok(())
}

fn query(
    request: &v1::WatchConnectorsRequest,
    tokens: &PageTokenCodec,
    latency_alert: Duration,
) -> Result<WatchQuery, ApiError> {
    let mut violations = crate::domain::validate::Violations::default();
    let filter = convert::search_filter(
        &mut violations,
        "filter.",
        &request.filter.clone().unwrap_or_default(),
        latency_alert,
    );
    let resume_after = match request.resume_token.as_str() {
        "" => None,
        token => match decode(tokens, token, &filter) {
            Ok(seq) => Some(seq),
            Err(error) => {
                let message = error
                    .to_string()
                    .replace("page_token", "resume_token")
                    .replace(
                        "repeat the search from the first page",
                        "watch again without it (a new snapshot)",
                    );
                violations.add("resume_token", message);
                None
            }
        },
    };
    convert::invalid_request("WatchConnectors", violations)?;
    Ok(WatchQuery {
        filter,
        resume_after,
    })
}

fn decode(
    tokens: &PageTokenCodec,
    token: &str,
    filter: &SearchFilter,
) -> Result<i64, PageTokenError> {
    let cursor = tokens.decode(token, filter)?;
    if cursor.name != TOKEN_NAME {
        return Err(PageTokenError::Malformed);
    }
    cursor.id.parse().map_err(|_| PageTokenError::Malformed)
}

/// A resume token for `filter` at the end of the change feed now: a watch
/// resumed from it sees every change committed from now on, without a
/// snapshot (the console renders a page of connectors, then follows it).
/// The feed's position when it has one (no round trip: it is never ahead
/// of the store), else the store's head.
async fn token_now<S: Store>(
    store: &S,
    feed: &Feed,
    tokens: &PageTokenCodec,
    filter: &SearchFilter,
) -> Result<String, ApiError> {
    let head = match feed.position() {
        Some(position) => position,
        None => store.change_head().await?,
    };
    Ok(encode(tokens, filter, head))
}

fn encode(tokens: &PageTokenCodec, filter: &SearchFilter, seq: i64) -> String {
    tokens.encode(
        filter,
        &Cursor {
            name: TOKEN_NAME.to_owned(),
            id: seq.to_string(),
        },
    )
}

/// A WatchConnectors response stream: it holds the watch's slot.
pub(super) type WatchConnectorsStream =
    super::watch_limits::WatchStream<Result<v1::WatchConnectorsResponse, Status>>;

impl<S: FleetStore> ConnectorApi<S> {
    /// The WatchConnectors RPC's body: the stream runs in a task of its
    /// own, ended by a reload that revokes the caller's read permission.
    pub(super) async fn watch_call(
        &self,
        request: Request<v1::WatchConnectorsRequest>,
    ) -> Result<Response<WatchConnectorsStream>, Status> {
        let principal = auth::require(&request, Permission::ConnectorsRead)?;
        let query = query(request.get_ref(), &self.tokens, self.latency_alert)?;
        let slot = self.watch_limits.admit(&principal, &actor(&request).peer)?;
        {
            let _turn = self.watch_limits.read().await;
            check_resumable(&self.store, &query).await?;
        }
        let buffer = crate::defaults::WATCH_BUFFER;
        let (tx, rx) = tokio::sync::mpsc::channel(buffer);
        let stream = Watch {
            store: self.store.clone(),
            feed: self.feed.clone(),
            tokens: self.tokens.clone(),
            latency_alert: self.latency_alert,
            draining: self.draining.clone(),
            query,
            buffer,
            grace: self.watch_grace,
            limits: self.watch_limits.clone(),
        };
        let auth = self.auth.clone();
        tokio::spawn(
            async move {
                tokio::select! {
                    () = stream.run(tx.clone()) => {}
                    error = auth.revoked(&principal, Permission::ConnectorsRead) => {
                        let _ = tx.send(Err(ApiError::from(error).into())).await;
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        // Counted as open until the caller's stream is gone.
        Ok(Response::new(watch_limits::WatchStream {
            inner: tokio_stream::wrappers::ReceiverStream::new(rx),
            _slot: slot,
        }))
    }

    /// A WatchConnectors `resume_token` for `filter` at the current end of
    /// the change feed, read before a page is listed: a watch resumed from
    /// it misses no change the page does not show (one made meanwhile may
    /// come as an event for a row that already shows it).
    pub async fn watch_token_now(
        &self,
        request: Request<v1::ConnectorFilter>,
    ) -> Result<String, Status> {
        auth::require(&request, Permission::ConnectorsRead)?;
        let query = query(
            &v1::WatchConnectorsRequest {
                filter: Some(request.into_inner()),
                resume_token: String::new(),
            },
            &self.tokens,
            self.latency_alert,
        )?;
        Ok(token_now(&self.store, &self.feed, &self.tokens, &query.filter).await?)
    }
}

/// What a watch stream needs, cloned out of the service.
struct Watch<S> {
    store: S,
    feed: Feed,
    tokens: PageTokenCodec,
    latency_alert: Duration,
    draining: watch::Receiver<bool>,
    query: WatchQuery,
    buffer: usize,
    /// How long a full buffer waits for its reader before the stream ends.
    grace: Duration,
    /// Its turns at the database (and the caps it was admitted under).
    limits: super::watch_limits::WatchLimits,
}

type Sender = mpsc::Sender<Result<v1::WatchConnectorsResponse, Status>>;

/// Why a stream ended early.
enum End {
    /// The caller went away.
    Gone,
    /// The stream ends with this status.
    Fail(Status),
}

impl From<ApiError> for End {
    fn from(error: ApiError) -> Self {
        End::Fail(error.into())
    }
}

impl<S: Store> Watch<S> {
    /// Runs the stream into `tx` until the caller goes, the server drains,
    /// or the watcher falls behind its buffer.
    async fn run(mut self, tx: Sender) {
        let end = self.stream(&tx).await;
        if let Err(End::Fail(status)) = end {
            // After what is queued; a reader that never reads again is
            // not waited for long.
            let _ = tokio::time::timeout(Duration::from_secs(30), tx.send(Err(status))).await;
        }
    }

    async fn stream(&mut self, tx: &Sender) -> Result<(), End> {
        let mut heads = self.feed.subscribe();
        let mut cursor = match self.query.resume_after {
            Some(after) => after,
            None => self.snapshot(tx).await?,
        };
        let mut last_sent = tokio::time::Instant::now();
        let mut unsent_progress = false;
        loop {
            loop {
                let items = match self.feed.after(cursor, STEP) {
                    Some(items) => items,
                    None => {
                        let _turn = self.limits.read().await;
                        read_changes(&self.store, cursor, STEP)
                            .await
                            .map_err(ApiError::from)?
                            .into_iter()
                            .map(Arc::new)
                            .collect()
                    }
                };
                if items.is_empty() {
                    break;
                }
                for item in items {
                    cursor = item.seq;
                    match self.event(&item) {
                        Some(event) => {
                            self.send(tx, event, Some(cursor)).await?;
                            last_sent = tokio::time::Instant::now();
                            unsent_progress = false;
                        }
                        None => unsent_progress = true,
                    }
                }
            }
            if unsent_progress && last_sent.elapsed() >= PROGRESS_EVERY {
                let progress = v1::WatchConnectorsResponse {
                    r#type: v1::WatchEventType::Progress as i32,
                    connector: None,
                    resume_token: encode(&self.tokens, &self.query.filter, cursor),
                    version: 0,
                };
                self.send(tx, progress, Some(cursor)).await?;
                last_sent = tokio::time::Instant::now();
                unsent_progress = false;
            }
            tokio::select! {
                changed = heads.changed() => {
                    if changed.is_err() {
                        return Err(End::Gone);
                    }
                }
                _ = tokio::time::sleep(PROGRESS_EVERY) => {}
                _ = self.draining.wait_for(|draining| *draining) => {
                    return Err(End::Fail(Status::unavailable(
                        "the server is shutting down; watch again with the resume_token of the \
                         last event (another replica continues from it)",
                    )));
                }
                _ = tx.closed() => return Err(End::Gone),
            }
        }
    }

    /// Sends the matching connectors, then SNAPSHOT_END; returns the
    /// position the changes continue from (read before the snapshot: a
    /// change made while it is read may show in it and again as its
    /// event, never in neither).
    async fn snapshot(&mut self, tx: &Sender) -> Result<i64, End> {
        let head = {
            let _turn = self.limits.read().await;
            self.store.change_head().await.map_err(ApiError::from)?
        };
        let mut after: Option<Cursor> = None;
        loop {
            // Pages are read a few watches at a time (`WatchLimits`): a
            // crowd of watches starting together queues here, not for the
            // connections starts and pauses need.
            let page = {
                let _turn = self.limits.read().await;
                self.store
                    .list_connectors(&self.query.filter, after.as_ref(), SNAPSHOT_PAGE)
                    .await
                    .map_err(ApiError::from)?
            };
            after = page.connectors.last().map(|last| Cursor {
                name: last.name.clone(),
                id: last.id.clone(),
            });
            for connector in page.connectors {
                let event = v1::WatchConnectorsResponse {
                    r#type: v1::WatchEventType::Snapshot as i32,
                    version: connector.version,
                    connector: Some(connector_view(connector, self.latency_alert)),
                    resume_token: String::new(),
                };
                // A reader may take the snapshot at its own pace, but one
                // that stops reading ends the stream (a snapshot is not
                // resumable: it watches again).
                self.send(tx, event, None).await?;
            }
            if !page.more {
                break;
            }
        }
        let end = v1::WatchConnectorsResponse {
            r#type: v1::WatchEventType::SnapshotEnd as i32,
            connector: None,
            resume_token: encode(&self.tokens, &self.query.filter, head),
            version: 0,
        };
        self.send(tx, end, None).await?;
        Ok(head)
    }

    /// The event one change makes for this filter, if any.
    fn event(&self, item: &FeedItem) -> Option<v1::WatchConnectorsResponse> {
        let kind = match seen(&self.query.filter, item.before.as_ref(), item.now.as_ref()) {
            Seen::Changed => v1::WatchEventType::Changed,
            Seen::Left => v1::WatchEventType::Removed,
            Seen::Outside => return None,
        };
        Some(v1::WatchConnectorsResponse {
            r#type: kind as i32,
            connector: item
                .now
                .clone()
                .map(|connector| connector_view(connector, self.latency_alert)),
            resume_token: encode(&self.tokens, &self.query.filter, item.seq),
            version: item.version,
        })
    }

    /// Queues an event. A full buffer waits for the reader for at most
    /// `grace` (a reader that reads keeps up, however far behind it
    /// started); past it the stream ends, with the token to resume from
    /// (`seq`, the event's position; None in the snapshot, which is not
    /// resumable). Only this stream waits: the feed never does, and a
    /// stream that is not read holds its buffer for `grace` at most.
    async fn send(
        &self,
        tx: &Sender,
        event: v1::WatchConnectorsResponse,
        seq: Option<i64>,
    ) -> Result<(), End> {
        match tokio::time::timeout(self.grace, tx.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(Ok(event));
                Ok(())
            }
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Fail(
                ApiError::WatcherTooSlow {
                    // Everything before this change was queued or matched
                    // nothing: the watch resumes with it.
                    resume_token: seq.map_or_else(String::new, |seq| {
                        encode(&self.tokens, &self.query.filter, seq - 1)
                    }),
                    buffer: self.buffer,
                    grace: self.grace,
                }
                .into(),
            )),
        }
    }
}
