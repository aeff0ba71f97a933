//! Mail: the outbox worker delivers queued messages over real SMTP, to files, or to the log.

mod config;
mod reliability;

use std::time::Duration;

use autorisen::{
    domains::auth::emails::Template,
    mail::{enqueue, Email},
};
use sqlx::{AnyPool, Row};

use crate::{
    helpers::{Backend, TestApp},
    on_both_backends,
    smtp_sink::SmtpSink,
};

on_both_backends!(
    a_queued_message_is_delivered_over_smtp_with_recipient_subject_text_html_and_link,
    the_file_transport_writes_a_parseable_eml_file,
    with_the_default_log_transport_a_message_is_marked_sent_and_its_payload_cleared,
);

/// Worker settings that keep tests quick.
pub const FAST: [(&str, &str); 3] = [
    ("MAIL_POLL_INTERVAL_MS", "20"),
    ("MAIL_RETRY_BASE_MS", "10"),
    ("MAIL_FROM", "CapeControl <no-reply@capecontrol.test>"),
];

/// `FAST` plus `extra`.
pub fn vars<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    FAST.iter().chain(extra).copied().collect()
}

/// Queues `emails` in one committed transaction, as a service would, and wakes the worker.
pub async fn queue(app: &TestApp, emails: &[Email<Template>]) {
    let mut tx = app.state.db.pool().begin().await.unwrap();
    for email in emails {
        enqueue(&mut tx, email).await.unwrap();
    }
    tx.commit().await.unwrap();
    app.state.mail.wake();
}

/// A verification email to `to` with a link carrying `token`.
pub fn verify(to: &str, token: &str) -> Email<Template> {
    Email {
        to: to.into(),
        template: Template::VerifyEmail {
            link: format!("https://app.capecontrol.test/auth/verify-email?token={token}"),
        },
    }
}

/// One outbox row as the assertions need it.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub recipient: String,
    pub status: String,
    pub attempts: i64,
    pub payload: Option<String>,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
}

/// Every outbox row, oldest first.
pub async fn outbox(pool: &AnyPool) -> Vec<OutboxRow> {
    sqlx::query(
        "SELECT recipient, status, attempts, payload, last_error, sent_at FROM mail_outbox \
         ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| OutboxRow {
        recipient: r.get("recipient"),
        status: r.get("status"),
        attempts: r.get("attempts"),
        payload: r.get("payload"),
        last_error: r.get("last_error"),
        sent_at: r.get("sent_at"),
    })
    .collect()
}

/// Waits (at most 15 s) until every row is `sent` or `failed`, and returns the rows.
pub async fn settled(pool: &AnyPool) -> Vec<OutboxRow> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let rows = outbox(pool).await;
        let done = rows
            .iter()
            .all(|r| r.status == "sent" || r.status == "failed");
        if done || tokio::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Parses a raw message.
pub fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default()
        .parse(raw)
        .expect("a parseable RFC 5322 message")
}

async fn a_queued_message_is_delivered_over_smtp_with_recipient_subject_text_html_and_link(
    backend: Backend,
) {
    let sink = SmtpSink::with_credentials("mailer@capecontrol.test", "p@ss word/1").await;
    let transport = sink.transport_url(Some(("mailer%40capecontrol.test", "p%40ss%20word%2F1")));
    let app = TestApp::spawn_with(backend, &vars(&[("MAIL_TRANSPORT", &transport)])).await;
    let token = "tok_a1&b2";

    queue(&app, &[verify("new.user@example.test", token)]).await;

    let got = sink.wait_for(1).await;
    assert_eq!(got.len(), 1, "one message arrived");
    let m = &got[0];
    assert_eq!(m.to, ["new.user@example.test"]);
    assert_eq!(m.from, "no-reply@capecontrol.test");
    assert_eq!(
        m.auth,
        Some(("mailer@capecontrol.test".into(), "p@ss word/1".into())),
        "logged in with the decoded credentials"
    );
    let parsed = parse(m.data.as_bytes());
    assert_eq!(
        parsed.subject(),
        Some("Confirm your CapeControl email address")
    );
    let link = format!("https://app.capecontrol.test/auth/verify-email?token={token}");
    let text = parsed.body_text(0).expect("a text part");
    assert!(text.contains(&link), "{text}");
    let html = parsed.body_html(0).expect("an HTML part");
    assert!(
        html.contains("verify-email?token=tok_a1&amp;b2"),
        "escaped link: {html}"
    );
    assert!(!html.contains(&link), "never unescaped in HTML");

    let rows = settled(app.state.db.pool()).await;
    assert_eq!(rows[0].status, "sent");
    assert_eq!(rows[0].attempts, 1);
    assert!(rows[0].sent_at.is_some());
    assert_eq!(rows[0].payload, None, "the token is gone from the database");
    assert_eq!(app.state.mail.stats().sent, 1);
    let status: serde_json::Value = app.get("/api/status").await.json().await.unwrap();
    assert_eq!(status["features"]["mail"], true);
    assert_eq!(status["mail_transport"], "smtp");
}

async fn the_file_transport_writes_a_parseable_eml_file(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("outgoing");
    let transport = format!("file://{}", maildir.display());
    let app = TestApp::spawn_with(backend, &vars(&[("MAIL_TRANSPORT", &transport)])).await;
    let link = "https://app.capecontrol.test/auth/reset-password?token=reset123";

    let email = Email {
        to: "forgetful@example.test".into(),
        template: Template::PasswordReset { link: link.into() },
    };
    queue(&app, &[email]).await;

    let rows = settled(app.state.db.pool()).await;
    assert_eq!(rows[0].status, "sent", "{rows:?}");
    let files: Vec<_> = std::fs::read_dir(&maildir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().unwrap(), "eml");
    let raw = std::fs::read(&files[0]).unwrap();
    let parsed = parse(&raw);
    assert_eq!(parsed.subject(), Some("Reset your CapeControl password"));
    let to = parsed
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address());
    assert_eq!(to, Some("forgetful@example.test"));
    assert!(parsed.body_text(0).unwrap().contains(link));
    assert!(
        parsed.body_html(0).unwrap().contains(link),
        "no character to escape"
    );
}

async fn with_the_default_log_transport_a_message_is_marked_sent_and_its_payload_cleared(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, &vars(&[("MAIL_TRANSPORT", "log")])).await;

    queue(&app, &[verify("someone@example.test", "logged-token")]).await;

    let rows = settled(app.state.db.pool()).await;
    assert_eq!(rows[0].status, "sent", "{rows:?}");
    assert_eq!(rows[0].payload, None);
    let status: serde_json::Value = app.get("/api/status").await.json().await.unwrap();
    assert_eq!(status["mail_transport"], "log");
    assert_eq!(status["features"]["mail"], true);
}
