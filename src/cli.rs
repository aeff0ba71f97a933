//! The command line: `serve` (default), `migrate`, `config check`, `version`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{
    app::{shutdown_signal, App},
    config::Config,
    db::{migrate, Db},
    telemetry,
};

/// Exit code for an invalid configuration.
pub const EXIT_CONFIG: u8 = 2;

/// Autorisen: the CapeControl platform service.
#[derive(Debug, Parser)]
#[command(name = "autorisen", version, about)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP until SIGTERM or SIGINT.
    Serve,
    /// Apply pending database migrations and exit (the Heroku release phase).
    Migrate,
    /// Inspect the configuration.
    Config {
        /// What to do with it.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print version, commit and build time.
    Version,
}

/// `config` actions.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration, secrets redacted; exit 2 listing every problem.
    Check,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Version => {
            println!(
                "autorisen {} (commit {}, built {})",
                env!("CARGO_PKG_VERSION"),
                env!("AUTORISEN_BUILD_GIT_SHA"),
                env!("AUTORISEN_BUILD_TIME")
            );
            ExitCode::SUCCESS
        }
        Command::Config {
            action: ConfigAction::Check,
        } => with_config(|config| {
            for (var, value) in config.redacted() {
                println!("{var}={value}");
            }
            println!("configuration is valid");
            ExitCode::SUCCESS
        }),
        Command::Migrate => with_config(|config| block_on(migrate_command(config))),
        Command::Serve => with_config(|config| block_on(serve_command(config))),
    }
}

/// Loads the configuration or exits 2 with every problem listed.
fn with_config(f: impl FnOnce(Config) -> ExitCode) -> ExitCode {
    match Config::from_env() {
        Ok(config) => f(config),
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate_command(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format, &config.log_level);
    let db = Db::connect(config.database_url.expose(), 2).await?;
    let applied = migrate::run(&db).await?;
    tracing::info!(applied, backend = ?db.backend(), "database is up to date");
    db.close().await;
    Ok(())
}

async fn serve_command(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format, &config.log_level);
    let addr = std::net::SocketAddr::new(config.host, config.port);
    let env = config.env;
    let app = App::build(config).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, env = env.as_str(), backend = ?app.state().db.backend(), "listening");
    app.serve(listener, shutdown_signal()).await
}
