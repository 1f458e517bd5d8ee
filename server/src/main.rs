//! `copr-pools`: the server (default) and its command-line tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use copr_pools::cli::{
    self, KeyCommand, PoolsCommand, ResourceCommand, RoutingCommand, TicketCommand, TokenCommand,
};
use copr_pools::config::{CONFIG_PATH_ENV, Config};

/// Self-service builder pools for Fedora Copr, with a resalloc-compatible allocation engine.
#[derive(Parser, Debug)]
#[command(name = "copr-pools", version)]
struct Args {
    /// Configuration file (TOML). Every key can also be set as COPR_POOLS_<KEY>.
    #[arg(long, global = true, env = CONFIG_PATH_ENV, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the web UI, the APIs and the allocation engine (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Import or export pool definitions in resalloc's pools.yaml format.
    #[command(subcommand)]
    Pools(PoolsCommand),
    /// Inspect and delete machines (like resalloc-maint).
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Inspect tickets (like resalloc-maint).
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// Measure the engine and the XML-RPC API and print the figures.
    Bench(cli::BenchArgs),
    /// Keys that encrypt stored credentials: generate one, rotate to the first configured.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Routing rules (the tags Copr adds to builds): export for Copr, import Copr's.
    #[command(subcommand)]
    Routing(RoutingCommand),
    /// API tokens for the routing API.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// mimalloc: small, short-lived allocations (every HTTP request makes several) cost less than
/// with glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("copr-pools: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("copr-pools: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match args.command.unwrap_or(Command::Serve) {
            Command::Serve => copr_pools::serve::run(config, args.config.clone()).await,
            Command::Migrate => cli::migrate(&config).await,
            Command::Pools(c) => cli::pools(&config, c).await,
            Command::Resource(c) => cli::resource(&config, c).await,
            Command::Ticket(c) => cli::ticket(&config, c).await,
            Command::Bench(a) => copr_pools::bench::run(&config, a).await,
            Command::Key(c) => cli::key(&config, c).await,
            Command::Routing(c) => cli::routing(&config, c).await,
            Command::Token(c) => cli::token(&config, c).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("copr-pools: {e:#}");
            ExitCode::FAILURE
        }
    }
}
