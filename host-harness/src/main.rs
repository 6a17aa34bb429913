//! `host-harness`: load a flow:channel component and drive it from the command line.

use clap::Parser;
use host_harness::cli::{Cli, UsageError, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(outcome) => {
            if let Some(json) = outcome.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json).expect("JSON values serialise")
                );
            }
            if let Some(text) = outcome.text {
                println!("{text}");
            }
            ExitCode::from(outcome.code as u8)
        }
        Err(e) => {
            let usage = e.downcast_ref::<UsageError>().is_some();
            eprintln!("host-harness: {e:#}");
            // Usage errors and plugins that fail to load are 2; anything else (a guest trap, a
            // host failure) is 1… but a trap must never look like "invalid input", so 4.
            ExitCode::from(if usage { 2 } else { 4 })
        }
    }
}
