//! The `eventflows` command line: one binary for serving and for managing
//! users, organizations and algorithms. Errors go to stderr with exit status 1.

use app::api::ModelHostAdmin;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use app::domain::Role;

use crate::config::Settings;
use crate::db::Db;
use crate::services::Services;

#[derive(Parser)]
#[command(
    name = "eventflows",
    version,
    about = "Event Flows: event-driven ML pipelines on Kafka"
)]
struct Cli {
    /// Optional TOML settings file; EVENTFLOWS_* variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the web UI, the server functions and the REST routes.
    Serve,
    /// Runs pending database migrations and exits.
    Migrate,
    /// Manages users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manages organizations and their members.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manages algorithms and their versions.
    #[command(subcommand)]
    Algorithm(AlgorithmCommand),
    /// Manages the model hosts `http:` runtimes may call.
    #[command(subcommand)]
    ModelHosts(ModelHostsCommand),
    /// Seeds the demo users, organizations and algorithms (safe to repeat)
    /// and prints the logins.
    Demo {
        /// Also connect this Kafka broker (host:port) with demo topics and grants.
        #[arg(long, value_name = "BOOTSTRAP")]
        kafka: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates a user; the password is read from standard input.
    Add {
        name: String,
        /// Makes the user a cluster administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input (its first line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Creates an organization.
    Add { org: String },
    /// Makes a user a member of an organization.
    AddMember { org: String, user: String },
}

#[derive(Subcommand)]
enum AlgorithmCommand {
    /// Adds an algorithm, or one more version of it.
    Add {
        /// ORG/NAME
        algorithm: String,
        /// Semantic version, MAJOR.MINOR.PATCH.
        #[arg(long)]
        version: String,
        /// builtin:ID, http:URL, or http-batch:URL (a model that takes batches)
        #[arg(long)]
        runtime: String,
        /// What the algorithm does (used when the algorithm is new).
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Subcommand)]
enum ModelHostsCommand {
    /// Lists the allowed model hosts.
    List,
    /// Allows a host, host:port, *.domain, or a URL prefix (http(s)://host/path).
    Allow { entry: String },
    /// Removes an entry.
    Remove { entry: String },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref(), |name| std::env::var(name).ok())?;
    let serving = matches!(cli.command, Command::Serve);
    init_tracing(if serving { "info" } else { "warn" });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let result = runtime.block_on(async move {
        let services = open(&settings).await?;
        match cli.command {
            Command::Serve => serve(services, settings).await,
            Command::Migrate => {
                println!("The database is up to date.");
                Ok(())
            }
            Command::User(UserCommand::Add { name, admin, .. }) => {
                let password = read_password()?;
                let role = if admin { Role::Admin } else { Role::Member };
                services.add_user(&name, &password, role).await?;
                services
                    .audit(CLI_ACTOR, "user-created", name.trim(), role.as_str())
                    .await;
                println!("Created {} '{}'.", role.as_str(), name.trim());
                Ok(())
            }
            Command::Org(OrgCommand::Add { org }) => {
                services.add_organization(&org).await?;
                services
                    .audit(CLI_ACTOR, "organization-created", org.trim(), "")
                    .await;
                println!("Created organization '{}'.", org.trim());
                Ok(())
            }
            Command::Org(OrgCommand::AddMember { org, user }) => {
                if services.add_member(&org, &user).await? {
                    services
                        .audit(CLI_ACTOR, "member-added", user.trim(), org.trim())
                        .await;
                    println!("'{}' is now a member of '{}'.", user.trim(), org.trim());
                } else {
                    println!(
                        "'{}' was already a member of '{}'.",
                        user.trim(),
                        org.trim()
                    );
                }
                Ok(())
            }
            Command::Algorithm(AlgorithmCommand::Add {
                algorithm,
                version,
                runtime,
                description,
            }) => {
                services
                    .add_algorithm_version(&algorithm, &version, &runtime, &description)
                    .await?;
                let target = format!("{} {}", algorithm.trim(), version.trim());
                services
                    .audit(CLI_ACTOR, "version-added", &target, runtime.trim())
                    .await;
                println!("Added {} version {}.", algorithm.trim(), version.trim());
                Ok(())
            }
            Command::ModelHosts(ModelHostsCommand::List) => {
                let hosts = services.model_hosts().await?;
                if hosts.is_empty() {
                    println!("No model hosts are allowed.");
                }
                for host in hosts {
                    println!("{}\t{}\t{}", host.entry, host.added_by, host.added_at);
                }
                Ok(())
            }
            Command::ModelHosts(ModelHostsCommand::Allow { entry }) => {
                let host = services.allow_model_host(CLI_ACTOR, &entry).await?;
                println!("Allowed {}.", host.entry);
                Ok(())
            }
            Command::ModelHosts(ModelHostsCommand::Remove { entry }) => {
                services.remove_model_host(CLI_ACTOR, &entry).await?;
                println!("Removed {}.", entry.trim());
                Ok(())
            }
            Command::Demo { kafka } => crate::demo::seed(&services, kafka.as_deref()).await,
        }
    });
    // A librdkafka call stuck on a broker that is gone (a consumer's close)
    // keeps a blocking-pool thread busy: the process does not wait for it.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    result
}

/// Who the command line acts as, where a change records its author.
pub const CLI_ACTOR: &str = "(command line)";

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn open(settings: &Settings) -> anyhow::Result<Services> {
    crate::db::create_private_dir(&settings.data_dir).with_context(|| {
        format!(
            "could not create the data directory {}",
            settings.data_dir.display()
        )
    })?;
    let url = settings.database_url.clone();
    let db = tokio::task::spawn_blocking(move || Db::open(&url))
        .await
        .context("opening the database was interrupted")??;
    let secrets =
        crate::secrets::SecretBox::load(settings.secret_key.as_deref(), &settings.data_dir)?;
    Services::new(db, secrets, settings.secure_cookies)
}

fn read_password() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("could not read the password from standard input")?;
    let password = input.lines().next().unwrap_or("").to_owned();
    if password.is_empty() {
        bail!(
            "no password on standard input: pipe it in, for example `echo \"$PASSWORD\" | eventflows user add NAME --password-stdin`"
        );
    }
    Ok(password)
}

/// How long the flows may take to finish their runs and store their
/// offsets when the server stops; then, how long background work may take.
/// Together they bound a shutdown whatever the broker does.
const RUNNER_SHUTDOWN: Duration = Duration::from_secs(10);
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(2);

async fn serve(services: Services, settings: Settings) -> anyhow::Result<()> {
    let instance = instance_id(&settings.data_dir)?;
    let runner = services.runner.clone();
    runner.set_instance(instance);
    runner.set_retry_limit(settings.retry_limit);
    runner.set_model_connections_per_host(settings.model_connections_per_host);
    runner.set_write_timeout(settings.write_timeout);
    runner.set_sqs_visibility(settings.sqs_visibility);
    let mut services = services;
    services.session_idle = settings.session_idle;
    if let Some(token) = &settings.metrics_token {
        let _ = services.metrics_token.set(token.clone());
    }
    let supervisor = runner.start();
    let app = crate::http::router(services, &settings.dist_dir);
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("could not listen on {}", settings.listen))?;
    tracing::info!(settings = ?settings, "Event Flows is listening on http://{}", settings.listen);
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("the web server stopped with an error");
    supervisor.abort();
    if tokio::time::timeout(RUNNER_SHUTDOWN, runner.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "the flows did not stop in time; exiting anyway (their unstored offsets are processed again)"
        );
    }
    served
}

/// This instance's name: created once in the data directory, kept across restarts.
fn instance_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("instance.id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_owned());
    }
    let id = format!("eventflows-{}", &crate::db::new_id()[..12]);
    std::fs::write(&path, &id).with_context(|| format!("could not write {}", path.display()))?;
    Ok(id)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
