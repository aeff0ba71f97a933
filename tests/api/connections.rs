//! Connection-level protection (issue 15, point 6): silent connections are closed, one address
//! cannot hold every connection, and near the file-descriptor limit the service answers 503
//! instead of stopping.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    helpers::{base_vars, Backend, TestApp, TestDb},
    on_both_backends,
};

on_both_backends!(
    a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout,
    one_address_cannot_hold_more_connections_than_its_cap,
    near_the_file_descriptor_limit_new_connections_get_a_503_and_requests_resume_after,
);

/// Reads until the peer closes (or 15 s pass); what it sent.
async fn read_to_close(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut out)).await;
    read.ok().and_then(Result::ok).map(|_| out)
}

async fn get_status(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let answer = read_to_close(&mut stream).await?;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .map(str::to_owned)
}

async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let addr = app
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let sent = read_to_close(&mut silent).await;
    assert_eq!(
        sent,
        Some(Vec::new()),
        "closed without a word, not left open"
    );
}

async fn one_address_cannot_hold_more_connections_than_its_cap(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("MAX_CONNECTIONS_PER_IP", "5")]).await;
    let addr = app
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut sixth = TcpStream::connect(&addr).await.unwrap();
    let answer = String::from_utf8(read_to_close(&mut sixth).await.unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    // Regression: the declared length was 7 bytes more than the body, so clients waited for
    // bytes that never came and reported a truncated answer.
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let declared = format!("content-length: {}", body.len());
    assert!(head.lines().any(|l| l == declared), "{answer}");
    let problem: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["status"], 503);
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get_status(&addr).await.as_deref() != Some("HTTP/1.1 200 OK") {
        assert!(
            std::time::Instant::now() < deadline,
            "connections never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn near_the_file_descriptor_limit_new_connections_get_a_503_and_requests_resume_after(
    backend: Backend,
) {
    let db = TestDb::create(backend).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec {} serve",
            env!("CARGO_BIN_EXE_autorisen")
        ))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .kill_on_drop(true);
    for (k, v) in base_vars(&db) {
        cmd.env(k, v);
    }
    cmd.env("PORT", port.to_string())
        .env("MAX_CONNECTIONS_PER_IP", "10000")
        .env("HEADER_READ_TIMEOUT_SECONDS", "30");
    let mut server = cmd.spawn().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while get_status(&addr).await.as_deref() != Some("HTTP/1.1 200 OK") {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Far more silent connections than 256 descriptors allow (the case that stopped the service).
    let mut held = Vec::new();
    for _ in 0..300 {
        if let Ok(stream) = TcpStream::connect(&addr).await {
            held.push(stream);
        }
    }
    let status = get_status(&addr).await;
    assert_eq!(
        status.as_deref(),
        Some("HTTP/1.1 503 Service Unavailable"),
        "answered, with a 503, not left hanging"
    );
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get_status(&addr).await.as_deref() != Some("HTTP/1.1 200 OK") {
        assert!(
            std::time::Instant::now() < deadline,
            "requests did not resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().await.unwrap();
}
