//! A small SMTP server for tests: speaks EHLO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP
//! and QUIT over plain TCP, records every accepted message, and can be told to answer `451`.
#![allow(dead_code)]

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// `MAIL FROM` address.
    pub from: String,
    /// `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The message as sent after DATA, dot-unstuffed.
    pub data: String,
    /// The user name and password the client authenticated with, if any.
    pub auth: Option<(String, String)>,
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    /// Transactions still to refuse with `451` at `MAIL FROM`.
    refuse: AtomicUsize,
    refused: AtomicUsize,
    credentials: Option<(String, String)>,
}

/// A running sink on `127.0.0.1:<port>`; stops when dropped.
pub struct SmtpSink {
    /// The port it listens on.
    pub port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Starts a sink that accepts mail without authentication.
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// Starts a sink that requires `AUTH` with these credentials before `MAIL FROM`.
    pub async fn with_credentials(user: &str, password: &str) -> Self {
        Self::launch(Some((user.into(), password.into()))).await
    }

    async fn launch(credentials: Option<(String, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            credentials,
            ..State::default()
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, shared.clone()));
            }
        });
        Self { port, state, task }
    }

    /// `MAIL_TRANSPORT` pointing at this sink (plain SMTP, optional credentials).
    pub fn transport_url(&self, credentials: Option<(&str, &str)>) -> String {
        let auth = credentials.map_or_else(String::new, |(u, p)| format!("{u}:{p}@"));
        format!("smtp://{auth}127.0.0.1:{}?tls=none", self.port)
    }

    /// Answers `451` to the next `n` transactions.
    pub fn refuse_next(&self, n: usize) {
        self.state.refuse.store(n, Ordering::SeqCst);
    }

    /// How many transactions were refused.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// Everything accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits (at most 15 s) until `n` messages arrived, and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.received();
            if got.len() >= n || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the client has said so far in the current transaction.
#[derive(Default)]
struct Session {
    from: Option<String>,
    to: Vec<String>,
    auth: Option<(String, String)>,
}

async fn session(stream: TcpStream, state: Arc<State>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut s = Session::default();
    if write
        .write_all(b"220 sink.test ESMTP ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    loop {
        let Some(line) = read_line(&mut lines).await else {
            return;
        };
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            "250-sink.test\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SMTPUTF8".to_string()
        } else if upper.starts_with("HELO") || upper == "NOOP" {
            "250 OK".into()
        } else if upper.starts_with("AUTH ") {
            authenticate(&line, &mut lines, &mut write, &state, &mut s).await
        } else if upper.starts_with("MAIL FROM:") {
            mail_from(&line, &state, &mut s)
        } else if upper.starts_with("RCPT TO:") && s.from.is_some() {
            s.to.push(address(&line));
            "250 OK".into()
        } else if upper == "DATA" && !s.to.is_empty() {
            if write
                .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                .await
                .is_err()
            {
                return;
            }
            let Some(data) = read_data(&mut lines).await else {
                return;
            };
            state.received.lock().unwrap().push(Received {
                from: s.from.take().unwrap_or_default(),
                to: std::mem::take(&mut s.to),
                data,
                auth: s.auth.clone(),
            });
            "250 OK queued".into()
        } else if upper == "RSET" {
            (s.from, s.to) = (None, Vec::new());
            "250 OK".into()
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            "503 bad sequence of commands".into()
        };
        if write
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

fn mail_from(line: &str, state: &State, s: &mut Session) -> String {
    if state.credentials.is_some() && s.auth.is_none() {
        return "530 authentication required".into();
    }
    let refuse = state
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if refuse {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return "451 4.3.0 try again later".into();
    }
    s.from = Some(address(line));
    s.to.clear();
    "250 OK".into()
}

async fn authenticate(
    line: &str,
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    state: &State,
    s: &mut Session,
) -> String {
    let mut words = line.split_whitespace().skip(1);
    let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
    let initial = words.next().map(str::to_owned);
    let given = match mechanism.as_str() {
        "PLAIN" => {
            let encoded = match initial {
                Some(i) => Some(i),
                None => ask(write, lines, b"334 \r\n").await,
            };
            encoded.and_then(|e| decode(&e)).and_then(|plain| {
                let mut parts = plain.split('\0').skip(1);
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            })
        }
        "LOGIN" => {
            let user = match initial {
                Some(i) => Some(i),
                None => ask(write, lines, b"334 VXNlcm5hbWU6\r\n").await,
            };
            let password = ask(write, lines, b"334 UGFzc3dvcmQ6\r\n").await;
            user.and_then(|u| decode(&u))
                .zip(password.and_then(|p| decode(&p)))
        }
        _ => return "504 unrecognized authentication type".into(),
    };
    match (given, &state.credentials) {
        (Some(given), Some(expected)) if given == *expected => {
            s.auth = Some(given);
            "235 2.7.0 authentication succeeded".into()
        }
        (Some(given), None) => {
            s.auth = Some(given);
            "235 2.7.0 authentication succeeded".into()
        }
        _ => "535 5.7.8 authentication credentials invalid".into(),
    }
}

async fn ask(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    prompt: &[u8],
) -> Option<String> {
    write.write_all(prompt).await.ok()?;
    read_line(lines).await
}

async fn read_line(lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut line = String::new();
    match lines.read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
    }
}

async fn read_data(lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut data = String::new();
    loop {
        let line = read_line(lines).await?;
        if line == "." {
            return Some(data);
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
        data.push_str("\r\n");
    }
}

fn address(line: &str) -> String {
    let after = line.split_once(':').map_or("", |(_, a)| a);
    let start = after.find('<').map_or(0, |i| i + 1);
    let end = after.find('>').unwrap_or(after.len());
    after[start..end].trim().to_owned()
}

fn decode(b64: &str) -> Option<String> {
    String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()
}
