//! Retries, giving up, crash safety, and several instances on one database.

use std::collections::HashMap;

use autorisen::{
    app::App,
    db::{migrate, types::now_micros, Db},
    domains::auth::emails::Template,
    mail::{enqueue, Email},
};
use tokio::sync::oneshot;

use super::{outbox, queue, settled, vars, verify};
use crate::{
    helpers::{base_vars, config_from, Backend, TestApp, TestDb},
    on_both_backends,
    smtp_sink::SmtpSink,
};

on_both_backends!(
    a_temporarily_failing_smtp_server_is_retried_until_it_accepts,
    a_message_is_marked_failed_after_the_maximum_number_of_attempts,
    mail_queued_before_the_app_starts_is_delivered_once_it_starts,
    two_apps_on_one_database_deliver_each_message_exactly_once,
);

async fn a_temporarily_failing_smtp_server_is_retried_until_it_accepts(backend: Backend) {
    let sink = SmtpSink::start().await;
    sink.refuse_next(2);
    let transport = sink.transport_url(None);
    let app = TestApp::spawn_with(backend, &vars(&[("MAIL_TRANSPORT", &transport)])).await;

    queue(&app, &[verify("patient@example.test", "t1")]).await;

    let rows = settled(app.state.db.pool()).await;
    assert_eq!(rows[0].status, "sent", "{rows:?}");
    assert_eq!(rows[0].attempts, 3, "two refusals, then success");
    assert_eq!(sink.refused(), 2);
    assert_eq!(sink.received().len(), 1, "delivered once");
    let stats = app.state.mail.stats();
    assert_eq!((stats.retried, stats.sent, stats.failed), (2, 1, 0));
}

async fn a_message_is_marked_failed_after_the_maximum_number_of_attempts(backend: Backend) {
    // A port bound but never listened on: every connection is refused, and no other test can
    // take the port meanwhile.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = closed.local_addr().unwrap().port();
    let transport = format!("smtp://mailer:pw-never-logged@127.0.0.1:{port}?tls=none");
    let app = TestApp::spawn_with(
        backend,
        &vars(&[("MAIL_TRANSPORT", &transport), ("MAIL_MAX_ATTEMPTS", "3")]),
    )
    .await;

    queue(&app, &[verify("unlucky@example.test", "t2")]).await;

    let rows = settled(app.state.db.pool()).await;
    assert_eq!(rows[0].status, "failed", "{rows:?}");
    assert_eq!(rows[0].attempts, 3);
    assert_eq!(rows[0].payload, None, "a dead message keeps no token");
    let error = rows[0].last_error.clone().expect("the reason is kept");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(!error.contains("pw-never-logged"), "{error}");
    let stats = app.state.mail.stats();
    assert_eq!((stats.retried, stats.sent, stats.failed), (2, 0, 1));
}

async fn mail_queued_before_the_app_starts_is_delivered_once_it_starts(backend: Backend) {
    let sink = SmtpSink::start().await;
    let db = TestDb::create(backend).await;
    let pool = Db::connect(&db.url, 2).await.unwrap();
    migrate::run(&pool).await.unwrap();
    // Committed, then the process "died" before sending.
    let mut tx = pool.pool().begin().await.unwrap();
    let changed = Email {
        to: "before@example.test".into(),
        template: Template::PasswordChanged,
    };
    enqueue(&mut tx, &changed).await.unwrap();
    tx.commit().await.unwrap();
    // Claimed by an instance that crashed mid-send: its lease ran out a second ago.
    enqueue(
        &mut pool.pool().acquire().await.unwrap(),
        &verify("claimed@example.test", "t3"),
    )
    .await
    .unwrap();
    sqlx::query(
        "UPDATE mail_outbox SET status = 'sending', attempts = 1, claimed_by = 'dead', \
         locked_until = $1 WHERE recipient = 'claimed@example.test'",
    )
    .bind(now_micros() - 1_000_000)
    .execute(pool.pool())
    .await
    .unwrap();
    pool.close().await;

    let mut all: HashMap<String, String> = base_vars(&db);
    for (k, v) in vars(&[("MAIL_TRANSPORT", &sink.transport_url(None))]) {
        all.insert(k.into(), v.into());
    }
    let app = TestApp::start(backend, db, config_from(&all)).await;

    let got = sink.wait_for(2).await;
    let mut to: Vec<_> = got.iter().map(|m| m.to[0].clone()).collect();
    to.sort();
    assert_eq!(to, ["before@example.test", "claimed@example.test"]);
    let rows = settled(app.state.db.pool()).await;
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
    let taken_over = rows
        .iter()
        .find(|r| r.recipient.starts_with("claimed"))
        .unwrap();
    assert_eq!(taken_over.attempts, 2, "the crashed attempt counts");
}

async fn two_apps_on_one_database_deliver_each_message_exactly_once(backend: Backend) {
    const MESSAGES: usize = 40;
    let sink = SmtpSink::start().await;
    let transport = sink.transport_url(None);
    let mail_vars = vars(&[("MAIL_TRANSPORT", &transport)]);
    let first = TestApp::spawn_with(backend, &mail_vars).await;
    let mut all = base_vars(&first.db);
    for (k, v) in &mail_vars {
        all.insert((*k).into(), (*v).into());
    }
    let second = App::build(config_from(&all)).await.unwrap();
    let second_mail = second.state().mail.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(second.serve(listener, async {
        let _ = stopped.await;
    }));

    let emails: Vec<_> = (0..MESSAGES)
        .map(|i| verify(&format!("user{i}@example.test"), &format!("tok{i}")))
        .collect();
    queue(&first, &emails).await;
    second_mail.wake();

    let rows = settled(first.state.db.pool()).await;
    assert!(
        rows.iter().all(|r| r.status == "sent" && r.attempts == 1),
        "{rows:?}"
    );
    let mut to: Vec<_> = sink.received().iter().map(|m| m.to[0].clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), MESSAGES, "every recipient got mail");
    assert_eq!(sink.received().len(), MESSAGES, "and nobody got it twice");
    let sent = first.state.mail.stats().sent + second_mail.stats().sent;
    assert_eq!(sent, MESSAGES as u64);
    assert_eq!(outbox(first.state.db.pool()).await.len(), MESSAGES);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
