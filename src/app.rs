//! Application state, router assembly, and serving with graceful shutdown.

use std::{future::Future, sync::Arc, time::Instant};

use axum::Router;
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    config::Config,
    db::{migrate, Db},
    domains,
    edge::Edge,
    http::{
        layers,
        server::{self, ConnOptions},
        web,
    },
    jobs::{self, Jobs, Runner, RunnerOptions},
    kv::Kv,
    mail::{self, Mailer},
    openapi::ApiDoc,
};

/// Everything a handler may need: one `Arc`, so the per-request clones axum makes cost a single
/// reference-count increment. Fields are reached through `Deref` (`state.db`, `state.config`).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Services {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The database pool.
    pub db: Db,
    /// Redis, when configured.
    pub kv: Option<Kv>,
    /// Rate limits, bans and in-flight caps.
    pub edge: Edge,
    /// When this process started serving (for uptime).
    pub started: Instant,
    /// The same moment as a UTC date-time.
    pub started_at: DateTime<Utc>,
    /// Whether a built web app is being served at `/`.
    pub web_app: bool,
    /// Outgoing mail: call `mail.wake()` after committing a transaction that queued mail.
    pub mail: Mailer,
    /// Token keys and the password hasher.
    pub auth: crate::domains::auth::Auth,
    /// Background jobs: queue them in a transaction, then `jobs.wake()` after committing.
    pub jobs: Jobs,
}

/// A built application, ready to serve on any listener.
pub struct App {
    state: AppState,
    router: Router,
}

impl App {
    /// Connects to the database (migrating it when allowed) and assembles the router.
    ///
    /// Outside development and test, a schema that is behind the binary is refused unless
    /// `AUTORISEN_MIGRATE_ON_START=true`: the release phase (`autorisen migrate`) owns migrations.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = Db::connect(
            config.database_url.expose(),
            config.database_max_connections,
        )
        .await?;
        if config.migrate_on_start {
            let applied = migrate::run(&db).await?;
            if applied > 0 {
                tracing::info!(applied, backend = ?db.backend(), "applied pending migrations");
            }
        } else {
            let pending = migrate::pending(&db).await?;
            anyhow::ensure!(
                pending.is_empty(),
                "the database schema is behind this binary ({} migration(s) pending: {:?}); \
                 run `autorisen migrate` (the release phase) or set AUTORISEN_MIGRATE_ON_START=true",
                pending.len(),
                pending
            );
        }
        let kv = config
            .redis_url
            .as_ref()
            .map(|u| Kv::new(u.expose()))
            .transpose()?;
        let mut registry = jobs::Registry::new();
        let mail = Mailer::new(&config.mail, config.env, registry.wakeup())?;
        mail::delivery::register(&mut registry, db.clone(), mail.clone(), &config.mail);
        jobs::upkeep::register(&mut registry, db.clone());
        let jobs = Jobs::new(db.clone(), registry);
        let web = web::WebDist::find(config.web_dist_dir.clone());
        let edge = Edge::new(&config.edge, kv.clone(), db.clone());
        edge.spawn_upkeep(config.edge.abuse.sync_every);
        let auth = crate::domains::auth::Auth::new(&config);
        let state = AppState(Arc::new(Services {
            auth,
            config: Arc::new(config),
            db,
            kv,
            edge,
            started: Instant::now(),
            started_at: Utc::now(),
            web_app: web.is_some(),
            mail,
            jobs,
        }));
        let router = router(state.clone(), web);
        Ok(Self { state, router })
    }

    /// The state shared by handlers.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The full router with every layer applied.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Starts the job runner and serves until `shutdown` resolves, then lets in-flight requests
    /// finish for at most `SHUTDOWN_GRACE_SECONDS` and the jobs in hand finish before returning.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let runner = Runner::spawn(&state.jobs, runner_options(&state.config));
        let conn = &state.config.edge.conn;
        let options = ConnOptions {
            header_read_timeout: conn.header_read_timeout,
            max_header_bytes: conn.max_header_bytes,
        };
        let served = server::serve(
            listener,
            self.router,
            shutdown,
            state.config.shutdown_grace,
            options,
        )
        .await;
        runner.stop().await;
        state.db.close().await;
        served
    }
}

/// Serves `router` on `listener` with graceful shutdown bounded by `grace` and the default
/// connection limits.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> anyhow::Result<()> {
    server::serve(listener, router, shutdown, grace, ConnOptions::default()).await
}

/// The runner's options from `JOBS_*`; at shutdown the jobs in hand get as long as the longest
/// job takes today, one mail delivery (`MAIL_SEND_TIMEOUT_SECONDS`).
fn runner_options(config: &Config) -> RunnerOptions {
    RunnerOptions {
        stop_grace: config.mail.send_timeout + std::time::Duration::from_secs(1),
        ..RunnerOptions::from_settings(&config.jobs)
    }
}

/// Resolves on SIGTERM (Heroku, Kubernetes) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
}

/// Assembles every domain's routes, the docs and the web app, inside the shared layers.
fn router(state: AppState, web: Option<Arc<web::WebDist>>) -> Router {
    let (api_router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(domains::routes())
        .split_for_parts();
    let api = crate::openapi::finish(api);
    let app = api_router
        .with_state(state.clone())
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .fallback_service(Router::new().fallback(web::fallback).with_state(web));
    layers::apply(app, &state.config, &state.edge)
}
