//! `flowstore`: register, fetch, list and inspect flows from a shell.
//!
//! Human output goes to stderr and data (references, flow bytes, `--json`) to stdout, so the
//! command composes in scripts. Exit codes: see [`exit::ExitCode`].

mod backends;
mod commands;
mod exit;
mod output;

use clap::{Parser, Subcommand};

/// Store workflow definitions in pluggable backends and fetch them back.
#[derive(Debug, Parser)]
#[command(name = "flowstore", version, about, long_about = None)]
struct Cli {
    /// Print machine-readable JSON on stdout instead of human output.
    #[arg(long, global = true)]
    json: bool,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store a flow and print its storage reference as JSON.
    Register(commands::register::Args),
    /// Fetch a flow from a storage reference and verify it.
    Fetch(commands::fetch::Args),
    /// List stored flows and their versions, newest first.
    List(commands::list::Args),
    /// Delete old versions by a retention policy (plan first; deletes only with --yes) and
    /// sweep the bundle blobs no remaining version names.
    Prune(commands::prune::Args),
    /// Pretty-print a storage reference.
    Inspect(commands::inspect::Args),
    /// Show or trim the local caches (the git clone cache).
    Cache(commands::cache::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    output::init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::ExitCode::Failure.into();
        }
    };
    let out = output::Output::new(cli.json);
    let result = runtime.block_on(async {
        match cli.command {
            Command::Register(args) => commands::register::run(args, &out).await,
            Command::Fetch(args) => commands::fetch::run(args, &out).await,
            Command::List(args) => commands::list::run(args, &out).await,
            Command::Prune(args) => commands::prune::run(args, &out).await,
            Command::Inspect(args) => commands::inspect::run(args, &out).await,
            Command::Cache(args) => commands::cache::run(args, &out).await,
        }
    });
    match result {
        Ok(()) => exit::ExitCode::Success.into(),
        Err(e) => {
            let code = exit::ExitCode::for_error(&e);
            out.error(&e);
            code.into()
        }
    }
}
