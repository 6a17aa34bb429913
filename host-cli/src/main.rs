//! `host-harness`: load a flow:channel component and drive it from the command line.

use clap::Parser;
use host_cli::common::exit_code;
use host_cli::{Cli, run};
use std::io::Write;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: `serve`'s many small, short-lived allocations (HTTP,
/// JSON, SQLite rows) from several threads cost a seventh of its CPU in glibc under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The host's own log: `tracing` events to stderr, `info` and above unless `RUST_LOG` says
/// otherwise, colours only on a terminal. (Plugins' logs go through the contract's `log`.)
fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Threads the runtime may start for blocking work. That work is the store's transactions,
/// which queue on its connections (one for SQLite, a few for PostgreSQL): threads beyond a
/// few dozen only wait, each with its stack and its allocator heap (at the default of 512, a
/// campaign at 2,000 sends/s held ~350 threads and 1.3 GB, against ~400 MB and a quarter
/// more sends/s with this bound: docs/measurements.md). Queued blocking work waits for a
/// thread instead; nothing blocking here waits for other blocking work, so it cannot starve.
const BLOCKING_THREADS: usize = 32;

/// The process's one tokio runtime: every command runs on it.
fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run_cli()),
        Err(e) => {
            eprintln!("host-harness: starting the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run_cli() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(&cli).await {
        Ok(outcome) => {
            let mut out = std::io::stdout().lock();
            // A reader that stops early (`inspect | head`) closes the pipe: not an error.
            let written = outcome
                .json
                .map(|json| {
                    let text = serde_json::to_string_pretty(&json).expect("JSON values serialise");
                    writeln!(out, "{text}")
                })
                .transpose()
                .and_then(|_| outcome.text.map(|t| writeln!(out, "{t}")).transpose())
                .and_then(|_| out.flush());
            match written {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("host-harness: writing the output: {e}");
                    ExitCode::from(2)
                }
                _ => ExitCode::from(u8::try_from(outcome.code).unwrap_or(1)),
            }
        }
        Err(e) => {
            eprintln!("host-harness: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}
