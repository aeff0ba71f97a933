//! The billing benchmark's load generator (`bench/billing.sh`), with the local fakes the server
//! talks to: PayFast's validation endpoint (answers `VALID`) and Stripe's Checkout Sessions API,
//! served on `--fake-port`, so nothing leaves the machine. Start the server with
//! `PAYFAST_VALIDATE_URL=http://127.0.0.1:PORT/eng/query/validate` and
//! `STRIPE_API_BASE=http://127.0.0.1:PORT` first; then:
//!
//!   billing_load itn --url http://127.0.0.1:8000 --fake-port PORT --count 20000 --connections 32
//!   billing_load stripe-duplicates --url … --fake-port PORT --count 10000 --connections 32
//!
//! `itn` registers `--orders` customers, each checks out Pro monthly through PayFast, then
//! `--count` valid `COMPLETE` notifications (each a new `pf_payment_id`, spread over the orders:
//! renewals) are posted from `--connections` tasks after `--warmup` unrecorded ones, and one JSON
//! object is printed: notifications/s, p50/p99/max latency, and the answers by result.
//! `stripe-duplicates` checks out one credit pack through Stripe, posts the same signed
//! `checkout.session.completed` `--count` times from `--connections` tasks, and prints how many
//! answers were `applied`, `duplicate` or anything else, with the customer's credit balance and
//! invoice count afterwards (one payment's worth is one effect).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::Mutex;

/// The settings the script gives the server (see bench/billing.sh).
const MERCHANT_ID: &str = "10000100";
const PASSPHRASE: &str = "bench-passphrase";
const WEBHOOK_SECRET: &str = "whsec_bench";
const PASSWORD: &str = "orbit-velvet-cactus-lantern-42";

#[derive(Parser, Debug)]
#[command(about = "Billing notifications under load, with local PayFast and Stripe fakes")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// The server's base URL.
    #[arg(long)]
    url: String,
    /// Where the fakes listen (the server was started pointing at it).
    #[arg(long)]
    fake_port: u16,
    /// Notifications to post (measured).
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Concurrent posting tasks.
    #[arg(long, default_value_t = 32)]
    connections: usize,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Valid PayFast notifications per second.
    Itn {
        #[command(flatten)]
        common: Common,
        /// Customers with an order each; the notifications are spread over them.
        #[arg(long, default_value_t = 64)]
        orders: usize,
        /// Notifications posted first and not recorded.
        #[arg(long, default_value_t = 500)]
        warmup: usize,
    },
    /// One Stripe event delivered many times.
    StripeDuplicates {
        #[command(flatten)]
        common: Common,
    },
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let result = match args.command {
        Command::Itn {
            common,
            orders,
            warmup,
        } => itn(&common, orders, warmup).await,
        Command::StripeDuplicates { common } => stripe_duplicates(&common).await,
    };
    match result {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("billing_load: {e}");
            std::process::exit(1);
        }
    }
}

type Res<T> = Result<T, String>;

/// Serves the fakes on `port` for the rest of the run.
async fn serve_fakes(port: u16) -> Res<()> {
    let sessions = Arc::new(AtomicUsize::new(0));
    let router = axum::Router::new()
        .route(
            "/eng/query/validate",
            axum::routing::post(|| async { "VALID" }),
        )
        .route(
            "/v1/checkout/sessions",
            axum::routing::post(move || {
                let n = sessions.fetch_add(1, Ordering::SeqCst);
                async move {
                    axum::Json(json!({
                        "id": format!("cs_bench_{n}"),
                        "object": "checkout.session",
                        "url": format!("https://checkout.stripe.test/c/pay/cs_bench_{n}"),
                    }))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("the fakes cannot listen on {port}: {e}"))?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(())
}

fn client(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client")
}

/// Registers a customer and answers its access token.
async fn customer(http: &reqwest::Client, base: &str, n: usize) -> Res<String> {
    let email = format!("bench.billing.{}.{n}@example.com", std::process::id());
    let res = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD, "first_name": "Bench"}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let body: Value = res.json().await.map_err(|e| e.to_string())?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or(format!("registering answered {status}: {body}"))
}

async fn checkout(http: &reqwest::Client, base: &str, token: &str, body: Value) -> Res<Value> {
    let res = http
        .post(format!("{base}/api/billing/checkout"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let body: Value = res.json().await.map_err(|e| e.to_string())?;
    if status != 201 {
        return Err(format!("checkout answered {status}: {body}"));
    }
    Ok(body)
}

/// PHP's `urlencode` of the pairs, joined with `&` (the form encoder differs only on `*`/`~`,
/// which the values here do not contain).
fn encode(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// A `COMPLETE` notification for `order` (amount `amount`) with payment id `payment`, signed.
fn itn_body(order: &str, amount: &str, payment: &str) -> String {
    let mut pairs = vec![
        ("m_payment_id", order.to_owned()),
        ("pf_payment_id", payment.to_owned()),
        ("payment_status", "COMPLETE".to_owned()),
        ("item_name", "CapeControl Pro (monthly)".to_owned()),
        ("amount_gross", amount.to_owned()),
        ("amount_fee", "-12.17".to_owned()),
        ("amount_net", "516.83".to_owned()),
        ("name_first", "Bench".to_owned()),
        ("email_address", "bench@example.com".to_owned()),
        ("merchant_id", MERCHANT_ID.to_owned()),
        ("token", format!("tok-{order}")),
    ];
    let signed = format!("{}&passphrase={PASSPHRASE}", encode(&pairs));
    pairs.push(("signature", hex::encode(Md5::digest(signed.as_bytes()))));
    encode(&pairs)
}

/// What the posting tasks saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    answers: BTreeMap<String, usize>,
}

/// Posts `count` bodies made by `body(i)` from `connections` tasks; answers the tally and the
/// seconds it took. `record` is false for a warm-up.
async fn post_all(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&'static str, String)],
    connections: usize,
    count: usize,
    body: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> (Tally, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (http, url, headers) = (http.clone(), url.to_owned(), headers.to_vec());
            let (next, tally, body) = (next.clone(), tally.clone(), body.clone());
            tokio::spawn(async move {
                let mut mine = Tally::default();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count {
                        break;
                    }
                    let mut req = http.post(&url).body(body(i));
                    for (name, value) in &headers {
                        req = req.header(*name, value);
                    }
                    let t = Instant::now();
                    let answer = match req.send().await {
                        Ok(res) => {
                            let status = res.status().as_u16();
                            let json: Value = res.json().await.unwrap_or_default();
                            match json["result"].as_str() {
                                Some(r) if status == 200 => r.to_owned(),
                                _ => format!("http_{status}"),
                            }
                        }
                        Err(e) if e.is_timeout() => "timeout".into(),
                        Err(_) => "connection_error".into(),
                    };
                    mine.latencies_us.push(t.elapsed().as_micros() as u64);
                    *mine.answers.entry(answer).or_default() += 1;
                }
                let mut all = tally.lock().await;
                all.latencies_us.extend(mine.latencies_us);
                for (k, v) in mine.answers {
                    *all.answers.entry(k).or_default() += v;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a posting task");
    }
    let seconds = started.elapsed().as_secs_f64();
    let tally = std::mem::take(&mut *tally.lock().await);
    (tally, seconds)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn summary(mut tally: Tally, seconds: f64) -> Value {
    tally.latencies_us.sort_unstable();
    let n = tally.latencies_us.len();
    json!({
        "requests": n,
        "seconds": (seconds * 100.0).round() / 100.0,
        "per_second": (n as f64 / seconds).round(),
        "p50_ms": percentile(&tally.latencies_us, 50.0),
        "p99_ms": percentile(&tally.latencies_us, 99.0),
        "max_ms": percentile(&tally.latencies_us, 100.0),
        "answers": tally.answers,
    })
}

async fn itn(common: &Common, orders: usize, warmup: usize) -> Res<Value> {
    serve_fakes(common.fake_port).await?;
    let http = client(common.connections);
    let base = common.url.trim_end_matches('/');
    let mut made = Vec::with_capacity(orders);
    for n in 0..orders {
        let token = customer(&http, base, n).await?;
        let body = json!({"kind": "subscription", "plan": "pro", "cycle": "monthly", "provider": "payfast"});
        let order = checkout(&http, base, &token, body).await?;
        let id = order["order_id"].as_str().ok_or("no order_id")?.to_owned();
        let cents = order["amount_cents"].as_i64().ok_or("no amount_cents")?;
        made.push((id, format!("{}.{:02}", cents / 100, cents % 100)));
    }
    let made = Arc::new(made);
    let run = std::process::id();
    let url = format!("{base}/api/payments/payfast/itn");
    let headers = [(
        "content-type",
        "application/x-www-form-urlencoded".to_owned(),
    )];
    let body = |offset: usize| -> Arc<dyn Fn(usize) -> String + Send + Sync> {
        let made = made.clone();
        Arc::new(move |i| {
            let (order, amount) = &made[(i + offset) % made.len()];
            itn_body(order, amount, &format!("bench-{run}-{}", i + offset))
        })
    };
    post_all(&http, &url, &headers, common.connections, warmup, body(0)).await;
    let (tally, seconds) = post_all(
        &http,
        &url,
        &headers,
        common.connections,
        common.count,
        body(warmup),
    )
    .await;
    let mut report = summary(tally, seconds);
    report["orders"] = json!(orders);
    report["warmup"] = json!(warmup);
    report["connections"] = json!(common.connections);
    Ok(report)
}

async fn stripe_duplicates(common: &Common) -> Res<Value> {
    serve_fakes(common.fake_port).await?;
    let http = client(common.connections);
    let base = common.url.trim_end_matches('/');
    let token = customer(&http, base, 0).await?;
    let order = checkout(
        &http,
        base,
        &token,
        json!({"kind": "credits", "pack": "small", "provider": "stripe"}),
    )
    .await?;
    let order_id = order["order_id"].as_str().ok_or("no order_id")?;
    let cents = order["amount_cents"].as_i64().ok_or("no amount_cents")?;
    let event = json!({
        "id": format!("evt_bench_{}", std::process::id()),
        "object": "event",
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": format!("cs_bench_order_{order_id}"),
            "object": "checkout.session",
            "client_reference_id": order_id,
            "metadata": {"order_id": order_id},
            "amount_total": cents,
            "currency": "zar",
            "payment_status": "paid",
            "payment_intent": format!("pi_bench_{}", std::process::id()),
        }},
    })
    .to_string();
    let t = chrono::Utc::now().timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).expect("a key");
    mac.update(format!("{t}.{event}").as_bytes());
    let signature = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("stripe-signature", signature),
    ];
    let url = format!("{base}/api/payments/stripe/webhook");
    let (tally, seconds) = post_all(
        &http,
        &url,
        &headers,
        common.connections,
        common.count,
        Arc::new(move |_| event.clone()),
    )
    .await;
    let mut report = summary(tally, seconds);
    let credits: Value = http
        .get(format!("{base}/api/billing/credits"))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let invoices: Value = http
        .get(format!("{base}/api/billing/invoices?per_page=100"))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    report["credit_balance_cents"] = credits["balance_cents"].clone();
    report["pack_credit_cents"] = json!(cents);
    report["invoices"] = invoices["total"].clone();
    report["connections"] = json!(common.connections);
    Ok(report)
}
