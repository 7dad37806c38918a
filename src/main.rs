//! The `tessera` command: parse the command line, open the engine, run the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use tessera::auth::{Bootstrap, ADMIN_PASSWORD_ENV, ADMIN_PASSWORD_FILE, ADMIN_ROLE};
use tessera::engine::memory::MemoryLimitSpec;
use tessera::engine::{Engine, EngineOptions};
use tessera::wire::{Authentication, Handlers};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "A Customer Data Platform engine you query as PostgreSQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Directory holding the catalog and managed tables.
    #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./tessera-data")]
    data_dir: PathBuf,
    /// Address of the PostgreSQL endpoint.
    #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:5433")]
    listen: SocketAddr,
    /// Address of the HTTP event collection API (Segment's `/v1/track`, ...), or `off`.
    #[arg(long, env = "TESSERA_HTTP", default_value = "127.0.0.1:8080", value_parser = http_addr)]
    http: HttpAddr,
    /// Ask clients for no password: any existing LOGIN role is believed (development only).
    #[arg(long, env = "TESSERA_INSECURE_NO_AUTH", value_parser = clap::builder::BoolishValueParser::new())]
    insecure_no_auth: bool,
    /// PEM certificate chain for TLS on the PostgreSQL endpoint (needs --tls-key).
    #[arg(
        long,
        env = "TESSERA_TLS_CERT",
        requires = "tls_key",
        value_name = "FILE"
    )]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(
        long,
        env = "TESSERA_TLS_KEY",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    tls_key: Option<PathBuf>,
    /// A directory (or a URL prefix such as s3://bucket/exports/) external tables may
    /// read, besides the data directory; repeatable. Also TESSERA_ALLOW_LOCATIONS,
    /// colon-separated.
    #[arg(long = "allow-location", value_name = "DIR|URL")]
    allow_locations: Vec<String>,
    /// Memory for queries, shared by all: a size (4GiB, 512MiB; binary units) or a share
    /// of the machine's memory (25%). A query over it fails with SQLSTATE 53200.
    #[arg(long, env = "TESSERA_MEMORY_LIMIT", value_name = "SIZE|PERCENT", value_parser = MemoryLimitSpec::parse, default_value = "50%")]
    memory_limit: MemoryLimitSpec,
}

impl ServeArgs {
    /// The engine's limits: `--allow-location` and `TESSERA_ALLOW_LOCATIONS` together,
    /// the memory limit in bytes.
    fn engine_options(&self) -> EngineOptions {
        let mut allowed_locations = self.allow_locations.clone();
        if let Ok(env) = std::env::var("TESSERA_ALLOW_LOCATIONS") {
            allowed_locations.extend(tessera::engine::locations::split_roots(&env));
        }
        let available = tessera::engine::memory::available_memory();
        let memory_limit = self.memory_limit.bytes(available);
        if memory_limit.is_none() {
            warn!("the machine's memory is unknown: queries run without a memory limit (set one with --memory-limit)");
        }
        EngineOptions {
            allowed_locations,
            memory_limit: memory_limit.map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
        }
    }
}

/// `--http`: an address, or `off` (a newtype, as clap reads `Option` as "may be absent").
#[derive(Clone, Copy)]
struct HttpAddr(Option<SocketAddr>);

fn http_addr(text: &str) -> Result<HttpAddr, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(HttpAddr(None));
    }
    text.parse()
        .map(|a| HttpAddr(Some(a)))
        .map_err(|e| format!("{e} (an address such as 127.0.0.1:8080, or off)"))
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the data directory over the PostgreSQL protocol.
    Serve(ServeArgs),
    /// Generate the demo dataset into the data directory, register it, apply sql/, serve.
    Demo {
        #[command(flatten)]
        serve: ServeArgs,
        /// Number of customers to generate.
        #[arg(long, default_value_t = 10_000)]
        customers: usize,
        /// Random seed (the same seed gives the same data).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Directory of the SQL model applied after loading (`*.sql`, in name order).
        #[arg(long, default_value = "sql")]
        sql_dir: PathBuf,
    },
}

/// mimalloc rather than glibc's malloc: under load (many small allocations from tokio
/// tasks, JSON and Arrow on several threads) glibc's arena locks and consolidation took a
/// third of the server's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,datafusion_postgres=warn,pgwire=warn,buoyant_kernel=off,deltalake_core=warn".into()),
        )
        .init();
    #[cfg(unix)]
    set_allocator_purge_delay();
    tessera::install_crypto_provider();
    // No transparent huge pages: mimalloc marks its segments for them, so the kernel
    // zeroes 2 MiB at the first touch of each, and again after mimalloc returns the
    // memory (it purges freed pages after 10 ms). Arrow's per-batch buffers churn
    // through that: reading 30M edge rows for resolve_identities took 11-15 s with them
    // (57% of it in the kernel's clear_page) and 5 s without.
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        warn!("cannot turn transparent huge pages off: {e}");
    }
    let cli = Cli::parse();
    // Worker stacks of 8 MiB rather than 2: DataFusion plans and runs queries by
    // recursion over the plan, and a refresh that refreshes the views it reads first
    // nests their futures; in a debug build, which keeps each future's state on the
    // stack of every poll, `forget_subject` over the demo model overflowed 2 MiB.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// mimalloc returns freed memory to the kernel 10 ms after it was freed, by default.
/// Arrow's batch buffers are allocated and freed constantly, so the kernel faulted in and
/// zeroed the same memory again and again: reading 30M edge rows for
/// `resolve_identities` and counting its output spent about 2 s of its 11-13 s in page
/// faults. With a second, freed memory is reused instead. (10 s kept more memory
/// resident: a 10M-record `resolve_identities` peaked at 4.3 GB rather than 3.4 GB, and
/// ran no faster.) mimalloc reads its options from the environment before `main`, and
/// setting them from code needs `unsafe` (forbidden here), so the process runs itself
/// again with the option set, unless the operator set it. If that fails, it carries on
/// with mimalloc's default.
#[cfg(unix)]
fn set_allocator_purge_delay() {
    use std::os::unix::process::CommandExt;
    const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";
    if std::env::var_os(PURGE_DELAY).is_some() {
        return;
    }
    let error = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(PURGE_DELAY, "1000")
            .exec(),
        Err(e) => e,
    };
    warn!("cannot start again with {PURGE_DELAY}=1000 (freed memory goes back to the kernel after 10 ms): {error}");
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Cmd::Serve(args) => serve(args, None).await,
        Cmd::Demo {
            serve: args,
            customers,
            seed,
            sql_dir,
        } => {
            let demo = tessera::demo::Demo {
                customers,
                seed,
                sql_dir,
            };
            serve(args, Some(demo)).await
        }
    }
}

async fn serve(
    args: ServeArgs,
    demo: Option<tessera::demo::Demo>,
) -> Result<(), Box<dyn std::error::Error>> {
    // Certificate problems stop start-up before anything else (never plain text instead).
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tessera::wire::tls::acceptor(cert, key)?),
        _ => None,
    };
    let authentication = if args.insecure_no_auth {
        warn!("--insecure-no-auth: clients are NOT asked for a password; anyone who can reach the port can connect as any LOGIN role. Never use this outside development.");
        Authentication::Trust
    } else {
        Authentication::Scram
    };
    let options = args.engine_options();
    let memory = options.memory_limit.map_or("unlimited".to_string(), |b| {
        tessera::engine::memory::human(b as u64)
    });
    let engine = Engine::open_with(&args.data_dir, options).await?;
    info!(
        memory_limit = %memory,
        allowed_locations = %engine.allowed_locations().describe(),
        "limits"
    );
    match engine.roles().take_bootstrap() {
        Some(Bootstrap::Generated { password, file }) => eprintln!(
            "created superuser \"{ADMIN_ROLE}\" with the generated password {password} (kept in {}, mode 0600; set {ADMIN_PASSWORD_ENV} before the first start to choose it)",
            file.display()
        ),
        Some(Bootstrap::FromEnv) => {
            info!("created superuser \"{ADMIN_ROLE}\" with the password of {ADMIN_PASSWORD_ENV}")
        }
        None => {}
    }
    if let Some(demo) = demo {
        demo.install(&engine).await?;
    }
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        format!(
            "cannot listen on {}: {e} (choose another address with --listen)",
            args.listen
        )
    })?;
    let addr = listener.local_addr()?;
    info!(data_dir = %engine.data_dir().display(), tls = tls.is_some(), "tessera listening on {addr}");
    let password_file = engine.data_dir().join(ADMIN_PASSWORD_FILE);
    let password = if args.insecure_no_auth {
        "no password: --insecure-no-auth".to_string()
    } else if password_file.exists() {
        format!("password in {}", password_file.display())
    } else {
        format!("password: {ADMIN_PASSWORD_ENV} of the first start, or as changed by ALTER ROLE")
    };
    eprintln!(
        "connect with: psql -h {} -p {} -U {ADMIN_ROLE} tessera   ({password})",
        addr.ip(),
        addr.port()
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let http = match args.http.0 {
        Some(addr) => {
            let http_listener = TcpListener::bind(addr).await.map_err(|e| {
                format!("cannot listen for HTTP on {addr}: {e} (choose another address with --http, or --http off)")
            })?;
            eprintln!("http listening on {}", http_listener.local_addr()?);
            let mut stopped = stopped.clone();
            let stopping = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let collector = engine.collector().clone();
            Some(tokio::spawn(tessera::collect::http::serve(
                http_listener,
                collector,
                stopping,
            )))
        }
        None => None,
    };
    let scheduler = tessera::engine::matview::spawn_scheduler(engine.clone());
    let deliveries = tessera::activate::spawn(&engine);
    let handlers = Arc::new(Handlers::new(engine, authentication));
    tessera::server::serve(listener, handlers, tls, shutdown_signal()).await;
    scheduler.abort();
    deliveries.abort();
    // Requests in flight are answered (their events committed) before the process ends.
    let _ = stop.send(true);
    if let Some(http) = http {
        http.await??;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
