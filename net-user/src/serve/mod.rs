//! `netxdp serve`: a Prometheus exporter. `GET /metrics` answers with the counters of every
//! attached interface in the OpenMetrics text format.
//!
//! - [`snapshot`]: what one read of the pinned maps holds ([`Snapshot`]).
//! - [`encode`]: a snapshot as OpenMetrics text.
//!
//! Scrapes share snapshots: one read at a time, whose text every scrape within
//! [`SNAPSHOT_INTERVAL`] of it gets (those waiting for it included), so that many scrapers
//! cost the kernel and this process what one does. At most [`MAX_SCRAPES`] scrapes wait at
//! once; more are told to retry (503). Interfaces attached or detached meanwhile appear or go
//! with the next snapshot.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use netxdp::serve::{RuleMetrics, serve};
//! let listen = "127.0.0.1:9469".parse()?;
//! serve(listen, RuleMetrics::Auto, std::future::pending()).await
//! # }
//! ```

pub mod encode;
pub mod snapshot;

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::sync::{Mutex, Semaphore};
use tracing::warn;

pub use encode::{registry, render};
pub use snapshot::{RuleMetrics, Snapshot};

/// Where `serve` listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";

/// The content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a snapshot answers scrapes: counters are at most this old.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

/// Scrapes served or waiting at once.
pub const MAX_SCRAPES: usize = 64;

/// What every scrape shares.
pub struct Exporter {
    rule_metrics: RuleMetrics,
    /// The last snapshot's text, and when it was read; held while a snapshot is read, so
    /// that scrapes meanwhile wait for it instead of reading their own.
    last: Mutex<Option<(Instant, Bytes)>>,
    scrapes: Semaphore,
    snapshots: std::sync::atomic::AtomicU64,
}

impl Exporter {
    pub fn new(rule_metrics: RuleMetrics) -> Self {
        Self {
            rule_metrics,
            last: Mutex::new(None),
            scrapes: Semaphore::new(MAX_SCRAPES),
            snapshots: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The exposition: the last snapshot's, if it is recent, else a new one's.
    pub async fn exposition(&self) -> Result<Bytes> {
        let mut last = self.last.lock().await;
        if let Some((read_at, text)) = &*last
            && read_at.elapsed() < SNAPSHOT_INTERVAL
        {
            return Ok(text.clone());
        }
        let rule_metrics = self.rule_metrics;
        let snapshots = 1 + self
            .snapshots
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Reading the maps is system calls: off the async threads.
        let text = tokio::task::spawn_blocking(move || {
            let snapshot = Snapshot {
                snapshots,
                ..Snapshot::read(rule_metrics)
            };
            render(&registry(snapshot))
        })
        .await
        .context("the snapshot failed")?
        .context("encoding the snapshot")?;
        let text = Bytes::from(text);
        // Stamped once read: scrapes that waited for it take it as fresh.
        *last = Some((Instant::now(), text.clone()));
        Ok(text)
    }
}

/// `GET /metrics` and `GET /` over `exporter`.
pub fn router(exporter: Arc<Exporter>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .with_state(exporter)
}

async fn metrics(State(exporter): State<Arc<Exporter>>) -> Response {
    let Ok(_scrape) = exporter.scrapes.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "too many scrapes at once; retry\n",
        )
            .into_response();
    };
    match exporter.exposition().await {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            warn!("scrape failed: {error:#}");
            (StatusCode::INTERNAL_SERVER_ERROR, "scrape failed\n").into_response()
        }
    }
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<html><body>netxdp exporter: metrics are at <a href=\"/metrics\">/metrics</a>\
         </body></html>\n",
    )
}

/// Serves the pinned attachments' metrics on `listen` until `shutdown` completes.
pub async fn serve(
    listen: SocketAddr,
    rule_metrics: RuleMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| bind_error(listen, error))?;
    let local = listener.local_addr().unwrap_or(listen);
    eprintln!("serving Prometheus metrics on http://{local}/metrics");
    let app = router(Arc::new(Exporter::new(rule_metrics)));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .with_context(|| format!("serving on {local}"))
}

fn bind_error(listen: SocketAddr, error: io::Error) -> anyhow::Error {
    let hint = match error.kind() {
        io::ErrorKind::AddrInUse => {
            " (another process listens there: `ss -ltnp` names it; --listen picks another port)"
        }
        io::ErrorKind::AddrNotAvailable => " (no interface of this host has that address)",
        _ => "",
    };
    anyhow::Error::new(error).context(format!("cannot listen on {listen}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_is_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = runtime
            .block_on(serve(addr, RuleMetrics::Auto, std::future::ready(())))
            .unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains(&format!("cannot listen on {addr}")), "{text}");
        assert!(text.contains("ss -ltnp"), "{text}");
    }
}
