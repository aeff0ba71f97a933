//! Graceful shutdown: in-flight requests finish, within the grace period.

use std::time::{Duration, Instant};

use autorisen::app::serve_router;
use axum::{routing::get, Router};
use tokio::sync::oneshot;

async fn start(
    sleep: Duration,
    grace: Duration,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let router = Router::new().route(
        "/slow",
        get(move || async move {
            tokio::time::sleep(sleep).await;
            "finished"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve_router(
        listener,
        router,
        async {
            let _ = rx.await;
        },
        grace,
    ));
    (address, tx, server)
}

#[tokio::test]
async fn a_request_in_flight_when_shutdown_begins_still_gets_its_answer() {
    let (address, stop, server) = start(Duration::from_millis(800), Duration::from_secs(10)).await;
    let request = tokio::spawn(reqwest::get(format!("{address}/slow")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    let res = request.await.unwrap().expect("answered, not cut off");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "finished");
    server.await.unwrap().unwrap();
    assert!(
        reqwest::get(format!("{address}/slow")).await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_that_outlast_the_grace_period() {
    let (address, stop, server) = start(Duration::from_secs(30), Duration::from_millis(500)).await;
    let _request = tokio::spawn(reqwest::get(format!("{address}/slow")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped at the grace limit"
    );
}
