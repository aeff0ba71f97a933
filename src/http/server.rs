//! The HTTP server loop: hyper with connection limits that `axum::serve` does not expose, and
//! graceful shutdown bounded by a grace period.
//!
//! - A connection that sends nothing within the header-read timeout is closed (hyper's own
//!   timeout starts at the first byte, so silent connections used to stay open for good).
//! - One peer address (an IPv6 peer's /64) may hold `MAX_CONNECTIONS_PER_IP` connections;
//!   trusted proxies are exempt. Beyond it, and when open connections come near the process's
//!   file-descriptor limit, a connection is answered 503 with `Retry-After` and closed: the
//!   service keeps accepting instead of stalling on `EMFILE`.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use dashmap::DashMap;

use crate::edge::limiter::client_network;
use ipnet::IpNet;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use axum::{extract::ConnectInfo, Router};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Limits applied to every connection before a request reaches the router.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    /// How long a client may take to send its request head (slow-loris protection).
    pub header_read_timeout: Duration,
    /// The largest request head accepted; beyond it HTTP/1 answers 431.
    pub max_header_bytes: usize,
    /// Open connections one peer address may hold.
    pub max_connections_per_ip: usize,
    /// Peers exempt from the per-address cap (proxies carry many clients).
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for ConnOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16_384,
            max_connections_per_ip: 256,
            trusted_proxies: Vec::new(),
        }
    }
}

/// File descriptors kept free for the database, Redis, logs and the 503 answers themselves.
const FD_RESERVE: usize = 64;

/// The open connections, in all and per peer address.
#[derive(Default)]
struct Census {
    open: AtomicUsize,
    per_peer: DashMap<IpAddr, usize>,
}

/// One open connection, counted until it is dropped.
struct Counted {
    census: Arc<Census>,
    peer: Option<IpAddr>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.census.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(peer) = self.peer {
            self.census.per_peer.remove_if_mut(&peer, |_, n| {
                *n -= 1;
                *n == 0
            });
        }
    }
}

impl Census {
    /// Counts a new connection from `peer` (`None`: exempt from the per-peer cap); refuses it,
    /// still counted, when the peer or the process is over its limit.
    fn admit(
        self: &Arc<Self>,
        peer: Option<IpAddr>,
        per_peer: usize,
        total: usize,
    ) -> (Counted, bool) {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        let mut admitted = open <= total;
        if let Some(peer) = peer {
            let mut n = self.per_peer.entry(peer).or_insert(0);
            *n += 1;
            admitted &= *n <= per_peer;
        }
        let counted = Counted {
            census: self.clone(),
            peer,
        };
        (counted, admitted)
    }
}

/// The connections the process can hold: its soft file-descriptor limit less a reserve.
fn connection_capacity() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and reads nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !ok || limit.rlim_cur == libc::RLIM_INFINITY {
        return usize::MAX;
    }
    usize::try_from(limit.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_RESERVE)
        .max(1)
}

/// The answer to a connection over a limit, written before it is closed.
const OVER_LIMIT_BODY: &str = "{\"type\":\"/problems/service-unavailable\",\"title\":\"Service \
Unavailable\",\"status\":503,\"detail\":\"Too many open connections; retry shortly.\"}";

/// The whole answer to a connection over a limit, its length computed from its body.
fn over_limit() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{OVER_LIMIT_BODY}",
        OVER_LIMIT_BODY.len()
    )
}

/// Answers the connection's first request with [`over_limit`] and closes it. The answer waits
/// (a second at most) for the request to begin, as an HTTP client expects no answer before it
/// has asked.
async fn refuse(mut stream: TcpStream) {
    let mut head = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut head)).await;
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(over_limit().as_bytes()),
    )
    .await;
    let _ = stream.shutdown().await;
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    options: ConnOptions,
) -> anyhow::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(options.max_header_bytes as u32);
    let graceful = GracefulShutdown::new();
    let census = Arc::new(Census::default());
    let capacity = connection_capacity();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let exempt = options
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer.ip()));
        let counted_peer = (!exempt).then(|| client_network(peer.ip()));
        let (counted, admitted) =
            census.admit(counted_peer, options.max_connections_per_ip, capacity);
        if !admitted {
            tokio::spawn(async move {
                refuse(stream).await;
                drop(counted);
            });
            continue;
        }
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let first_byte_within = options.header_read_timeout;
        tokio::spawn(async move {
            let _counted = counted;
            // A client that sends nothing is dropped after the header-read timeout (hyper's
            // starts at the first byte), so silent connections cannot pile up.
            let mut probe = [0u8; 1];
            match tokio::time::timeout(first_byte_within, stream.peek(&mut probe)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let service =
                router.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    req
                });
            let conn = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: no new connections, finishing in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace expired; abandoning requests still in flight");
        }
    }
    tracing::info!("stopped");
    Ok(())
}
