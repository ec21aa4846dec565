//! The event log over HTTP (a page of events, and a live stream of server-sent events),
//! and the metadata backup.

use super::AppState;
use crate::error::ServerError;
use crate::events::Event;
use axum::extract::{Query, State};
use axum::response::sse::{KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

/// Events one request returns at most.
const MAX_EVENTS: usize = 1000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/events/stream", get(stream_events))
        .route("/api/v1/backup", get(backup))
}

/// Query of `GET /api/v1/events` and `.../stream`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    /// Only this cluster's events.
    #[serde(default)]
    cluster: Option<String>,
    /// Only events after this sequence number (absent: the newest `limit`).
    #[serde(default)]
    after: Option<u64>,
    /// At most this many (default 100, at most 1,000).
    #[serde(default)]
    limit: Option<usize>,
}

impl EventQuery {
    fn check(&self, s: &AppState) -> Result<(), ServerError> {
        if let Some(c) = &self.cluster {
            s.meta.cluster(c)?;
        }
        Ok(())
    }
}

/// The answer of `GET /api/v1/events`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct EventPage {
    /// The events, oldest first.
    events: Vec<Event>,
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, description = "Events, oldest first", body = EventPage)))]
async fn list_events(
    State(s): State<AppState>,
    Query(q): Query<EventQuery>,
) -> Result<Json<EventPage>, ServerError> {
    q.check(&s)?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_EVENTS);
    let log = s.meta.events();
    let events = match q.after {
        Some(after) => log.after(q.cluster.as_deref(), after, limit),
        None => log.latest(q.cluster.as_deref(), limit),
    };
    Ok(Json(EventPage { events }))
}

/// Every event from now on (of `cluster`, if given), as server-sent events: `id` is the
/// sequence number, `event` the kind, `data` the event's JSON. A client that falls behind
/// by more than the buffer gets an `event: lagged` and should re-read `GET /api/v1/events`.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events", params(EventQuery),
    responses((status = 200, description = "Server-sent events from now on: `id` the sequence number, `event` the kind, `data` the event's JSON", content_type = "text/event-stream", body = String)))]
async fn stream_events(
    State(s): State<AppState>,
    Query(q): Query<EventQuery>,
) -> Result<Sse<impl Stream<Item = Result<axum::response::sse::Event, Infallible>>>, ServerError> {
    q.check(&s)?;
    let cluster = q.cluster;
    let stream = BroadcastStream::new(s.meta.events().subscribe()).filter_map(move |item| {
        let sse = axum::response::sse::Event::default();
        match item {
            Ok(e) if cluster.as_ref().is_none_or(|c| *c == e.cluster) => Some(Ok(to_sse(sse, &e))),
            Ok(_) => None,
            Err(_) => Some(Ok(sse.event("lagged").data("{}"))),
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn to_sse(sse: axum::response::sse::Event, e: &Event) -> axum::response::sse::Event {
    sse.id(e.seq.to_string())
        .event(e.kind.clone())
        .data(serde_json::to_string(e).unwrap_or_else(|_| "{}".into()))
}

/// `GET /api/v1/backup`: a consistent snapshot of all metadata (see `crate::backup`), as
/// JSON lines, for `meridian backup`.
#[utoipa::path(get, path = "/api/v1/backup", tag = "backup",
    responses((status = 200, description = "Every metadata key in one consistent snapshot, as JSON lines", content_type = "application/jsonl", body = String)))]
async fn backup(State(s): State<AppState>) -> Result<axum::response::Response, ServerError> {
    use axum::response::IntoResponse;
    let text = crate::backup::take(s.meta.store().as_ref()).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/jsonl")],
        text,
    )
        .into_response())
}
