//! The assembly: builds the state and the router from the domain registry, and serves with
//! graceful shutdown.

use std::{future::Future, sync::Arc, time::Instant};

use axum::{middleware::map_response_with_state, Router};
use chrono::Utc;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    config::{Config, ConfigErrors},
    db::{migrate, Db},
    domains::{self, DOMAINS},
    edge::{
        policy::{RouteClass, RouteRule, RouteTable},
        Edge,
    },
    http::{
        layers,
        server::{self, ConnOptions},
        web,
    },
    jobs::{self, Jobs, Runner, RunnerOptions},
    kv::Kv,
    mail::{self, Mailer},
    openapi::ApiDoc,
    state::{AppState, LateState, Provided, Services},
};

/// Reads the configuration, the platform's and every registered domain's, from `lookup`.
pub fn load_config(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    Config::from_lookup(lookup, &domains::settings())
}

/// Reads the configuration from the process environment (and `.env` in development).
pub fn config_from_env() -> Result<Config, ConfigErrors> {
    Config::from_env(&domains::settings())
}

/// The paths the assembly itself serves: the API documentation, exempt from the edge.
const APP_ROUTES: &[RouteRule] = &[
    RouteRule::exact("/openapi.json", RouteClass::Exempt),
    RouteRule::subtree("/docs", RouteClass::Exempt),
];

/// Every route class declared by the assembly and the registered domains.
pub fn route_table() -> RouteTable {
    RouteTable::new(
        APP_ROUTES
            .iter()
            .chain(DOMAINS.iter().flat_map(|d| d.route_classes))
            .copied(),
    )
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
        let late = LateState::default();
        for domain in DOMAINS {
            (domain.jobs)(&mut registry, &late);
        }
        let jobs = Jobs::new(db.clone(), registry);
        let web = web::WebDist::find(config.web_dist_dir.clone());
        let edge = Edge::new(&config.edge, kv.clone(), db.clone(), route_table());
        edge.spawn_upkeep(config.edge.abuse.sync_every);
        let mut provided = Provided::default();
        for domain in DOMAINS {
            (domain.provide)(&config, &mut provided)
                .map_err(|e| e.context(format!("starting the {} domain", domain.name)))?;
        }
        let state = AppState::new(Services {
            config: Arc::new(config),
            db,
            kv,
            edge,
            started: Instant::now(),
            started_at: Utc::now(),
            web_app: web.is_some(),
            mail,
            jobs,
            provided,
            features: DOMAINS.iter().map(|d| d.features).collect(),
            clock: crate::clock::Clock::default(),
        });
        late.set(&state);
        for domain in DOMAINS {
            (domain.start)(state.clone())
                .await
                .map_err(|e| e.context(format!("starting the {} domain", domain.name)))?;
        }
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
        state.db.spawn_watch();
        let conn = &state.config.edge.conn;
        let options = ConnOptions {
            header_read_timeout: conn.header_read_timeout,
            max_header_bytes: conn.max_header_bytes,
            max_connections_per_ip: conn.max_connections_per_ip,
            trusted_proxies: state.config.edge.trusted_proxies.clone(),
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
    let api_routes = DOMAINS
        .iter()
        .fold(OpenApiRouter::with_openapi(ApiDoc::openapi()), |r, d| {
            r.merge((d.routes)())
        });
    let (api_router, api) = api_routes.split_for_parts();
    let api = crate::openapi::finish(api, &route_table());
    let app = api_router
        .with_state(state.clone())
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .fallback_service(
            Router::new()
                .fallback(web::fallback)
                .with_state(web::Site::new(web, reserved_paths(&state))),
        );
    // Outside the shared stack, which wraps the fallback service once: a storage fault noted on
    // a response tells health that writes are failing.
    layers::apply(app, &state.config, &state.edge).layer(map_response_with_state(
        state.db.clone(),
        crate::http::middleware::note_storage_faults,
    ))
}

/// Paths the web app never answers for: the API, and every exempt path (probes, docs).
fn reserved_paths(state: &AppState) -> Vec<&'static str> {
    let mut paths = vec!["/api"];
    paths.extend(state.edge.routes().paths(RouteClass::Exempt));
    paths
}
