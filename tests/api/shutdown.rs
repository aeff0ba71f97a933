//! Graceful shutdown: in-flight requests finish, within the grace period.
//!
//! The slow route tells the test when a request is inside it and finishes only when the test lets
//! it, so no assertion depends on how fast a loaded machine runs.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use autorisen::app::serve_router;
use axum::{routing::get, Router};
use tokio::sync::{mpsc, oneshot, Semaphore};

struct Server {
    address: String,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    entered: mpsc::UnboundedReceiver<()>,
    release: Arc<Semaphore>,
}

async fn start(grace: Duration) -> Server {
    let (entered_tx, entered) = mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    let gate = release.clone();
    let router = Router::new().route(
        "/slow",
        get(move || {
            let (entered, gate) = (entered_tx.clone(), gate.clone());
            async move {
                let _ = entered.send(());
                gate.acquire().await.unwrap().forget();
                "finished"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve_router(
        listener,
        router,
        async {
            let _ = rx.await;
        },
        grace,
    ));
    Server {
        address,
        stop,
        server,
        entered,
        release,
    }
}

#[tokio::test]
async fn a_request_in_flight_when_shutdown_begins_still_gets_its_answer() {
    let mut s = start(Duration::from_secs(30)).await;
    let request = tokio::spawn(reqwest::get(format!("{}/slow", s.address)));
    s.entered
        .recv()
        .await
        .expect("the request reached the handler");
    s.stop.send(()).unwrap();
    s.release.add_permits(1);
    let res = request.await.unwrap().expect("answered, not cut off");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "finished");
    s.server.await.unwrap().unwrap();
    assert!(
        reqwest::get(format!("{}/slow", s.address)).await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_that_outlast_the_grace_period() {
    let mut s = start(Duration::from_millis(300)).await;
    let _request = tokio::spawn(reqwest::get(format!("{}/slow", s.address)));
    s.entered
        .recv()
        .await
        .expect("the request reached the handler");
    let started = Instant::now();
    s.stop.send(()).unwrap();
    // The handler is never released: only the grace period can end the server.
    tokio::time::timeout(Duration::from_secs(20), s.server)
        .await
        .expect("the server stopped without waiting for the request")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it waited out the grace period first"
    );
}
