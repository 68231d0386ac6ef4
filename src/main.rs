use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    jitbridge::jose::install();
    let cli = jitbridge::cli::Cli::parse();
    jitbridge::telemetry::init();
    match jitbridge::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
