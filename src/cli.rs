//! The command line: `serve` (default), `migrate`, `config check`, `version`, `create-admin`,
//! `import-users`.

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
    /// Create an admin account (password from AUTORISEN_ADMIN_PASSWORD, else prompted twice).
    CreateAdmin {
        /// The admin's email.
        #[arg(long)]
        email: String,
        /// Given name.
        #[arg(long, default_value = "Admin")]
        first_name: String,
        /// Family name.
        #[arg(long, default_value = "")]
        last_name: String,
    },
    /// List or lift client bans, without HTTP: the way back in for an admin whose own address was
    /// banned. Running instances pick a lift up within `BAN_SYNC_SECONDS`.
    Bans {
        /// What to do.
        #[command(subcommand)]
        action: BansAction,
    },
    /// Import users from a JSON-lines or CSV export of the original users_v2 table.
    ImportUsers {
        /// The export file.
        file: std::path::PathBuf,
        /// The file's format (default: from the extension, else from its first character).
        #[arg(long, value_enum)]
        format: Option<crate::domains::users::import::Format>,
        /// Keep exported ADMIN roles (the original let anyone register as admin, so by default
        /// they come in as customers).
        #[arg(long)]
        trust_admin_role: bool,
    },
}

/// `bans` actions.
#[derive(Debug, Subcommand)]
pub enum BansAction {
    /// Print every running ban: address, level, end (RFC 3339), reason.
    List,
    /// End the ban on an address now (exit 1 when it is not banned).
    Lift {
        /// The banned address (an IPv6 address stands for its /64).
        ip: std::net::IpAddr,
    },
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
        Command::CreateAdmin {
            email,
            first_name,
            last_name,
        } => with_config(|config| {
            block_on(create_admin_command(config, email, first_name, last_name))
        }),
        Command::Bans { action } => with_config(|config| block_on(bans_command(config, action))),
        Command::ImportUsers {
            file,
            format,
            trust_admin_role,
        } => with_config(|config| {
            let options = crate::domains::users::import::Options {
                format,
                trust_admin_role,
            };
            block_on(import_users_command(config, file, options))
        }),
    }
}

/// Loads the configuration or exits 2 with every problem listed.
fn with_config(f: impl FnOnce(Config) -> ExitCode) -> ExitCode {
    match crate::app::config_from_env() {
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
    let _logs = telemetry::init(config.log_format, &config.log_level);
    let db = Db::connect(config.database_url.expose(), 2).await?;
    let applied = migrate::run(&db).await?;
    tracing::info!(applied, backend = ?db.backend(), "database is up to date");
    db.close().await;
    Ok(())
}

async fn serve_command(config: Config) -> anyhow::Result<()> {
    let _logs = telemetry::init(config.log_format, &config.log_level);
    let addr = std::net::SocketAddr::new(config.host, config.port);
    let env = config.env;
    let app = App::build(config).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, env = env.as_str(), backend = ?app.state().db.backend(), "listening");
    app.serve(listener, shutdown_signal()).await
}

/// Connects for a one-off command, migrating when this environment allows it.
async fn command_db(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(config.database_url.expose(), 2).await?;
    if config.migrate_on_start {
        migrate::run(&db).await?;
    } else {
        let pending = migrate::pending(&db).await?;
        anyhow::ensure!(
            pending.is_empty(),
            "the database schema is behind this binary; run `autorisen migrate` first"
        );
    }
    Ok(db)
}

async fn create_admin_command(
    config: Config,
    email: String,
    first_name: String,
    last_name: String,
) -> anyhow::Result<()> {
    let _logs = telemetry::init(config.log_format, &config.log_level);
    let password = match &config
        .domain::<crate::domains::auth::settings::AuthSettings>()
        .admin_password
    {
        Some(p) => p.expose().to_owned(),
        None => {
            let first = rpassword::prompt_password("Password for the new admin: ")?;
            let again = rpassword::prompt_password("Repeat it: ")?;
            anyhow::ensure!(first == again, "the two passwords differ");
            first
        }
    };
    let db = command_db(&config).await?;
    let id = crate::domains::users::create_admin::create_admin(
        &db,
        &email,
        &first_name,
        &last_name,
        &password,
    )
    .await?;
    println!("created admin {email} (id {id})");
    db.close().await;
    Ok(())
}

async fn bans_command(config: Config, action: BansAction) -> anyhow::Result<()> {
    use crate::edge::{ban_store::BanStore, bans::Bans};
    let _logs = telemetry::init(config.log_format, &config.log_level);
    let db = command_db(&config).await?;
    let kv = config
        .redis_url
        .as_ref()
        .map(|u| crate::kv::Kv::new(u.expose()))
        .transpose()?;
    let bans = Bans::new(
        BanStore::for_settings(&config.edge, kv, db.clone()),
        config.edge.abuse.clone(),
    );
    let outcome = match action {
        BansAction::List => {
            let list = bans.list().await?;
            if list.is_empty() {
                println!("no running bans");
            }
            for ban in list {
                let until = crate::db::types::from_micros(ban.until)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                println!(
                    "{}\tlevel {}\tuntil {until}\t{}",
                    ban.ip, ban.level, ban.reason
                );
            }
            Ok(())
        }
        BansAction::Lift { ip } => {
            if bans.lift(ip).await? {
                println!("lifted the ban on {ip}");
                Ok(())
            } else {
                Err(anyhow::anyhow!("{ip} is not banned"))
            }
        }
    };
    db.close().await;
    outcome
}

async fn import_users_command(
    config: Config,
    file: std::path::PathBuf,
    options: crate::domains::users::import::Options,
) -> anyhow::Result<()> {
    let _logs = telemetry::init(config.log_format, &config.log_level);
    let db = command_db(&config).await?;
    let report = crate::domains::users::import::run(&db, &file, &options).await?;
    db.close().await;
    println!(
        "imported: {}, skipped: {}, rejected: {}",
        report.imported,
        report.skipped.len(),
        report.rejected.len()
    );
    for (line, why) in &report.skipped {
        println!("  skipped line {line}: {why}");
    }
    for (line, why) in &report.rejected {
        println!("  rejected line {line}: {why}");
    }
    for line in &report.demoted {
        println!("  line {line}: ADMIN role not trusted, imported as customer (use --trust-admin-role to keep it)");
    }
    Ok(())
}
