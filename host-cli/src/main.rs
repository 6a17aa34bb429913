//! `host-harness`: load a flow:channel component and drive it from the command line.

use clap::Parser;
use host_cli::common::UsageError;
use host_cli::{Cli, run};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
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
            let usage = e.downcast_ref::<UsageError>().is_some();
            eprintln!("host-harness: {e:#}");
            // Usage errors and plugins that fail to load are 2; anything else (a guest trap, a
            // host failure) must never look like "invalid input", so 4.
            ExitCode::from(if usage { 2 } else { 4 })
        }
    }
}
