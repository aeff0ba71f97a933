//! A load generator for overload runs (`bench/overload.sh`): C keep-alive HTTP/1.1 connections,
//! one per task, each sending requests back to back for a warm-up (counted, not recorded) and
//! then for the measured duration, and one JSON object on stdout with the latencies of each
//! status class apart. wrk gives one latency distribution for every answer, so the fast 503s of
//! load shedding hide how long the ADMITTED requests queued: here the 2xx p99 is its own number.
//!
//!   cargo run --release --example overload -- --url http://127.0.0.1:8000/api/auth/me \
//!     --connections 2000 --duration 10 --warmup 2 -H "Authorization: Bearer $TOKEN"
//!
//! Every flag can also come from the environment (URL, CONNECTIONS, DURATION, WARMUP, HEADER for
//! one header, TIMEOUT). A request is recorded when it STARTS inside the measured window; the
//! ones still in flight when it ends are awaited (each at most TIMEOUT), so a slow request is
//! never left out of the percentiles. Connection set-up is not part of a request's latency
//! (as in wrk); reconnects are counted. Plain `http://` only.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::{
    body::Bytes,
    client::conn::http1::SendRequest,
    header::{HeaderName, HeaderValue, HOST},
    HeaderMap, Request, Uri,
};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::{net::TcpStream, task::JoinHandle, time::Instant};

/// The same allocator as the service's binary: the generator shares the cores with the server.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long a task waits after a failed connect before it tries again (no hot loop on a refusal).
const CONNECT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Parser, Debug)]
#[command(about = "Keep-alive HTTP/1.1 load with per-status-class latencies, as JSON")]
struct Args {
    /// The URL every request asks for (http:// only).
    #[arg(long, env = "URL")]
    url: Uri,
    /// Connections, one task each.
    #[arg(short, long, env = "CONNECTIONS", default_value_t = 2000)]
    connections: usize,
    /// Measured seconds (`10` or `10s`).
    #[arg(short, long, env = "DURATION", default_value = "10", value_parser = seconds)]
    duration: Duration,
    /// Seconds of load before the measured window, counted apart and not in the latencies.
    #[arg(short, long, env = "WARMUP", default_value = "2", value_parser = seconds)]
    warmup: Duration,
    /// An extra request header, `Name: value` (repeatable; the environment gives one).
    #[arg(short = 'H', long = "header", env = "HEADER", value_parser = header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// A request (or a connect) not done within this is counted as a timeout.
    #[arg(short, long, env = "TIMEOUT", default_value = "10", value_parser = seconds)]
    timeout: Duration,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// After a 503 or 429 with `Retry-After`, the connection waits that many seconds before its
    /// next request, as well-behaved clients (and the web app) do. Without it every connection
    /// asks again at once: the worst case, in which answering refusals takes the cores.
    #[arg(long, env = "HONOUR_RETRY_AFTER")]
    honour_retry_after: bool,
}

fn seconds(raw: &str) -> Result<Duration, String> {
    let n: f64 = raw
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{raw}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(n).map_err(|_| format!("`{raw}` is not a number of seconds"))
}

fn header(raw: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| format!("`{raw}` is not `Name: value`"))?;
    let name = HeaderName::try_from(name.trim()).map_err(|e| format!("header name: {e}"))?;
    let value = HeaderValue::try_from(value.trim()).map_err(|e| format!("header value: {e}"))?;
    Ok((name, value))
}

/// Where and what to ask, shared by every task.
struct Target {
    addr: String,
    uri: Uri,
    headers: HeaderMap,
    timeout: Duration,
    honour_retry_after: bool,
    /// Start of the measured window, and its end (no request starts after it).
    measure_from: Instant,
    end: Instant,
}

impl Target {
    fn new(args: &Args, started: Instant) -> Result<Self, String> {
        if args.url.scheme_str() != Some("http") {
            return Err(format!("{}: only http:// URLs are supported", args.url));
        }
        let authority = args.url.authority().ok_or("the URL has no host")?;
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let path = args.url.path_and_query().map_or("/", |p| p.as_str());
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            HeaderValue::try_from(authority.as_str()).map_err(|e| e.to_string())?,
        );
        for (name, value) in &args.headers {
            headers.append(name, value.clone());
        }
        let measure_from = started + args.warmup;
        Ok(Self {
            addr,
            uri: path.parse().map_err(|e| format!("{e}"))?,
            headers,
            timeout: args.timeout,
            honour_retry_after: args.honour_retry_after,
            measure_from,
            end: measure_from + args.duration,
        })
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// What happened to one request.
#[derive(Clone, Copy)]
enum Outcome {
    Status(u16),
    Failed(Failure),
}

/// Why a request (or the connect before it) got no answer.
#[derive(Clone, Copy)]
enum Failure {
    /// The TCP connect failed or timed out.
    Connect,
    /// No complete answer within the timeout.
    Timeout,
    /// The server closed or reset the connection before the answer's head was complete.
    Closed,
    /// The head (and its status) arrived, but the body broke off or was malformed.
    Body,
    /// Any other protocol or I/O error.
    Other,
}

/// The status classes reported apart, in output order.
const CLASSES: [&str; 5] = ["2xx", "503", "429", "other", "errors"];

fn class_of(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Status(200..=299) => 0,
        Outcome::Status(503) => 1,
        Outcome::Status(429) => 2,
        Outcome::Status(_) => 3,
        Outcome::Failed(_) => 4,
    }
}

/// One task's record; merged at the end.
#[derive(Default)]
struct Tally {
    /// Latencies in microseconds per class, measured window only.
    latencies: [Vec<u32>; 5],
    /// Counts per class during the warm-up.
    warmup: [u64; 5],
    /// Statuses of the `other` class (measured window), for telling a 401 from a 500.
    other_statuses: BTreeMap<u16, u64>,
    /// Failures by kind: connect, timeout, closed, body, other (measured window).
    failures: [u64; 5],
    /// Connections opened after a task's first one, in the measured window.
    reconnects: u64,
    /// Whether this task has opened its first connection (not merged).
    opened_one: bool,
}

impl Tally {
    fn record(&mut self, target: &Target, started: Instant, outcome: Outcome) {
        let class = class_of(outcome);
        if started < target.measure_from {
            self.warmup[class] += 1;
            return;
        }
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.latencies[class].push(micros);
        match outcome {
            Outcome::Status(s) if class == 3 => *self.other_statuses.entry(s).or_default() += 1,
            Outcome::Status(_) => {}
            Outcome::Failed(kind) => self.failures[kind as usize] += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        for (mine, theirs) in self.latencies.iter_mut().zip(other.latencies) {
            mine.extend(theirs);
        }
        for (mine, theirs) in self.warmup.iter_mut().zip(other.warmup) {
            *mine += theirs;
        }
        for (status, n) in other.other_statuses {
            *self.other_statuses.entry(status).or_default() += n;
        }
        for (mine, theirs) in self.failures.iter_mut().zip(other.failures) {
            *mine += theirs;
        }
        self.reconnects += other.reconnects;
    }
}

/// An open connection: the handle to send on and the task driving it (aborted to close it).
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn connect(target: &Target) -> Result<Conn, Failure> {
    let stream = tokio::time::timeout(target.timeout, TcpStream::connect(&target.addr))
        .await
        .map_err(|_| Failure::Connect)?
        .map_err(|_| Failure::Connect)?;
    stream.set_nodelay(true).map_err(|_| Failure::Connect)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Connect)?;
    let driver = tokio::spawn(async move {
        // Its errors reach the request that was in flight; nothing else to do with them here.
        let _ = conn.await;
    });
    Ok(Conn { sender, driver })
}

/// Sends one request on `conn` and reads the whole answer: its status and `Retry-After`
/// (seconds); `Err` leaves the connection unusable.
async fn exchange(conn: &mut Conn, target: &Target) -> Result<(u16, Option<u64>), Failure> {
    let response = conn
        .sender
        .send_request(target.request())
        .await
        .map_err(failure)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(|_| Failure::Body)?;
    }
    Ok((status, retry_after))
}

fn failure(e: hyper::Error) -> Failure {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    let reset = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted));
    if reset || e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        Failure::Closed
    } else {
        Failure::Other
    }
}

/// One connection's requests, back to back until the end of the window.
async fn worker(target: Arc<Target>) -> Tally {
    let mut tally = Tally::default();
    let mut slot: Option<Conn> = None;
    while Instant::now() < target.end {
        let Some(conn) = usable(&mut slot, &target, &mut tally).await else {
            continue;
        };
        let started = Instant::now();
        let mut pause = None;
        let outcome = match tokio::time::timeout(target.timeout, exchange(conn, &target)).await {
            Ok(Ok((status, retry_after))) => {
                if target.honour_retry_after && matches!(status, 429 | 503) {
                    pause = retry_after.map(Duration::from_secs);
                }
                Outcome::Status(status)
            }
            Ok(Err(kind)) => Outcome::Failed(kind),
            Err(_) => Outcome::Failed(Failure::Timeout),
        };
        if matches!(outcome, Outcome::Failed(_)) {
            slot = None;
        }
        tally.record(&target, started, outcome);
        if let Some(pause) = pause {
            let until = (Instant::now() + pause).min(target.end);
            tokio::time::sleep_until(until).await;
        }
    }
    tally
}

/// The connection in `slot` if it can take a request, else a new one put there. A connection
/// the server closed (idle, or after `Connection: close`) is replaced before the next request:
/// a reconnect, not a failed request. A failed connect is recorded and waited out (`None`).
async fn usable<'a>(
    slot: &'a mut Option<Conn>,
    target: &Target,
    tally: &mut Tally,
) -> Option<&'a mut Conn> {
    if let Some(conn) = slot.as_mut() {
        let ready = tokio::time::timeout(target.timeout, conn.sender.ready()).await;
        if matches!(ready, Ok(Ok(()))) {
            return slot.as_mut();
        }
    }
    let started = Instant::now();
    match connect(target).await {
        Ok(conn) => {
            if tally.opened_one && started >= target.measure_from {
                tally.reconnects += 1;
            }
            tally.opened_one = true;
            Some(slot.insert(conn))
        }
        Err(kind) => {
            *slot = None;
            tally.record(target, started, Outcome::Failed(kind));
            tokio::time::sleep(CONNECT_BACKOFF).await;
            None
        }
    }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted: &[u32], p: f64) -> Value {
    if sorted.is_empty() {
        return Value::Null;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    ms(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(micros: u32) -> Value {
    json!((f64::from(micros) / 10.0).round() / 100.0)
}

fn report(args: &Args, mut tally: Tally) -> Value {
    let secs = args.duration.as_secs_f64();
    let mut classes = serde_json::Map::new();
    for (name, latencies) in CLASSES.iter().zip(tally.latencies.iter_mut()) {
        latencies.sort_unstable();
        classes.insert(
            (*name).into(),
            json!({
                "count": latencies.len(),
                "p50_ms": percentile_ms(latencies, 50.0),
                "p90_ms": percentile_ms(latencies, 90.0),
                "p99_ms": percentile_ms(latencies, 99.0),
                "max_ms": latencies.last().map_or(Value::Null, |m| ms(*m)),
            }),
        );
    }
    let answered: usize = tally.latencies[..4].iter().map(Vec::len).sum();
    let requests = answered + tally.latencies[4].len();
    let [connect, timeout, closed, body, other] = tally.failures;
    let warmup: serde_json::Map<String, Value> = CLASSES
        .iter()
        .zip(tally.warmup)
        .map(|(name, n)| ((*name).to_owned(), json!(n)))
        .collect();
    let other_statuses: serde_json::Map<String, Value> = tally
        .other_statuses
        .iter()
        .map(|(status, n)| (status.to_string(), json!(n)))
        .collect();
    json!({
        "url": args.url.to_string(),
        "connections": args.connections,
        "duration_s": secs,
        "warmup_s": args.warmup.as_secs_f64(),
        "timeout_s": args.timeout.as_secs_f64(),
        "requests": requests,
        "answered": answered,
        "req_per_s": (answered as f64 / secs).round(),
        "classes": classes,
        "other_statuses": other_statuses,
        "errors": {
            "connect": connect, "timeout": timeout, "closed": closed, "body": body, "other": other
        },
        "reconnects": tally.reconnects,
        "warmup": warmup,
    })
}

async fn run(args: &Args) -> Result<Value, String> {
    let target = Arc::new(Target::new(args, Instant::now())?);
    let workers: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(worker(target.clone())))
        .collect();
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await.map_err(|e| format!("a worker failed: {e}"))?);
    }
    Ok(report(args, tally))
}

fn main() {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime.enable_all().build().expect("a tokio runtime");
    match runtime.block_on(run(&args)) {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("overload: {e}");
            std::process::exit(2);
        }
    }
}
