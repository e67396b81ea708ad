//! `sluice`: the Sluice server binary.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use log::{error, info};
use sluice_engine::{DataLocation, Sluice};
use sluice_server::auth::{AuthMethod, Authenticator, Users, check_listen_policy};
use sluice_server::memory_limit::{MemoryLimit, parse_memory_limit};
use sluice_server::tls::TlsPolicy;
use sluice_server::{DEFAULT_MAX_CONNECTIONS, ServerConfig, serve};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a SQL engine for AI data processing, served over the Postgres wire protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve SQL over the Postgres wire protocol (the default).
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5433", env = "SLUICE_LISTEN")]
    listen: SocketAddr,
    /// Data directory holding the catalog and tables: a local path or an
    /// object-store URL (`s3://bucket/prefix`; credentials, region and
    /// `AWS_ENDPOINT_URL` from the environment).
    #[arg(long, default_value = "./sluice-data", env = "SLUICE_DATA_DIR")]
    data_dir: String,
    /// A folder, `file://` URL or `s3://bucket/prefix` that object functions
    /// (`list_objects`, `read_image`, …) may read; repeat for several.
    /// Nothing outside these roots is readable.
    #[arg(
        long = "object-root",
        env = "SLUICE_OBJECT_ROOTS",
        value_delimiter = ','
    )]
    object_roots: Vec<String>,
    /// An environment variable remote models may read their API key from
    /// (`'api_key_env'`): an exact name or `PREFIX_*`; repeat for several.
    /// Unset: `OPENAI_API_KEY` and `SLUICE_MODEL_KEY_*`. No other variable
    /// of the server's environment can be sent to an endpoint.
    #[arg(
        long = "model-key-env",
        env = "SLUICE_MODEL_KEY_ENVS",
        value_delimiter = ','
    )]
    model_key_variables: Vec<String>,
    /// Connections served at once; one more gets SQLSTATE 53300 ("too many
    /// clients") while the others go on.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS as u32, env = "SLUICE_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Memory all queries together may hold, e.g. `2GiB` or `512MB`
    /// (DataFusion's memory pool: sorts, aggregations and joins spill to
    /// disk where they can; a query that still needs more fails with
    /// SQLSTATE 53200 while the server goes on). Unset: three quarters of
    /// the machine's or the cgroup's memory; `none`: no limit.
    #[arg(long, env = "SLUICE_MEMORY_LIMIT", value_parser = parse_memory_limit)]
    memory_limit: Option<MemoryLimit>,
    /// How clients log in: `trust` (anyone, as any user: refused on a
    /// non-loopback address unless --insecure), `password` (clear text) or
    /// `scram-sha-256`. Failed logins get SQLSTATE 28P01 and are logged.
    #[arg(long, default_value = "trust", env = "SLUICE_AUTH")]
    auth: AuthMethod,
    /// The users who may log in with `--auth password | scram-sha-256`:
    /// a file of `name:password` lines (`#` comments). Kept in memory
    /// only salted and hashed.
    #[arg(long, env = "SLUICE_USERS_FILE")]
    users_file: Option<std::path::PathBuf>,
    /// Allows `--auth trust` on an address other than loopback.
    #[arg(long)]
    insecure: bool,
    /// The server's TLS certificate chain (PEM). With `--tls-key`, clients
    /// may encrypt their connections (`sslmode=require`, `verify-full`).
    #[arg(long, env = "SLUICE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "SLUICE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Refuses clients that do not encrypt their connection (SQLSTATE 28000).
    #[arg(long, requires = "tls_cert")]
    tls_required: bool,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            data_dir: "./sluice-data".into(),
            object_roots: Vec::new(),
            model_key_variables: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS as u32,
            memory_limit: None,
            auth: AuthMethod::Trust,
            users_file: None,
            insecure: false,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
        }
    }
}

/// Stack of each async worker thread (tokio's default is 2 MiB).
const WORKER_STACK_BYTES: usize = 16 * 1024 * 1024;

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,sluice=info,sluice_server=info"),
    )
    .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => ServeArgs::default(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Planning recurses over expression trees: room for the deepest
        // statement the parser admits (see `sluice_engine::sql::complexity`)
        // with a wide margin. Only the pages used are ever touched.
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: ServeArgs) -> Result<(), String> {
    check_listen_policy(args.listen, args.auth, args.insecure)?;
    let users = match &args.users_file {
        Some(path) => Users::from_file(path)?,
        None => Users::default(),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => TlsPolicy::from_files(cert, key, args.tls_required)?,
        _ => TlsPolicy::default(),
    };
    let location = DataLocation::parse(&args.data_dir).map_err(|e| e.to_string())?;
    let mut builder = Sluice::builder().data_location(location);
    match MemoryLimit::resolve(args.memory_limit) {
        Some(limit) => {
            info!(
                "queries may hold {} together (--memory-limit)",
                bytesize::ByteSize(limit as u64)
            );
            builder = builder.memory_limit(limit);
        }
        None => info!("queries' memory is not limited (--memory-limit none)"),
    }
    let builder = args
        .object_roots
        .iter()
        .fold(builder, |builder, root| builder.object_root(root));
    let engine = args
        .model_key_variables
        .iter()
        .fold(builder, |builder, variable| {
            builder.model_key_variable(variable)
        })
        .build()
        .await
        .map_err(|e| format!("cannot start the engine: {e}"))?;
    let auth = Arc::new(Authenticator::new(args.auth, users, engine.roles())?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let config = ServerConfig {
        listen: args.listen,
        max_connections: args.max_connections as usize,
        auth,
        tls,
        ..ServerConfig::default()
    };
    let encryption = match (&config.tls.acceptor, config.tls.required) {
        (None, _) => "off",
        (Some(_), false) => "on",
        (Some(_), true) => "required",
    };
    info!(
        "Sluice listening on {} (data directory {}, --auth {}, TLS {encryption})",
        args.listen, args.data_dir, args.auth
    );
    serve(engine, listener, &config, shutdown_signal())
        .await
        .map_err(|e| format!("server failed: {e}"))?;
    info!("Sluice stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                log::warn!("cannot watch SIGTERM: {e}");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
