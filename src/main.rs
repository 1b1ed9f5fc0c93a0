use clap::Parser;
use connector_control::cli::{Cli, Failure};
use connector_control::telemetry;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = telemetry::init(cli.telemetry_options());
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        // A failed call of the people's CLI: its reason, message and a
        // distinct exit code.
        Err(error) if error.is::<Failure>() => {
            let failure = error.downcast::<Failure>().expect("checked");
            eprintln!("{failure}");
            ExitCode::from(failure.exit_code)
        }
        Err(error) => {
            // One line, the whole cause chain: "cannot connect to database URL: ...".
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
