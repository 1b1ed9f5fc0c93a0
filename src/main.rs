use clap::Parser;
use connector_control::{cli::Cli, telemetry};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = telemetry::init();
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, the whole cause chain: "cannot connect to database URL: ...".
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
