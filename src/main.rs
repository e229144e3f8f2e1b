//! The `iflow-actix` binary: load `.env`, parse the command line, dispatch.

use clap::Parser;

use iflow_actix::cli::{Cli, Command};
use std::process::ExitCode;

/// The gateway allocates and frees many small blocks per request (JSON
/// values, header maps, the HTTP codecs' buffers); jemalloc does this with
/// less CPU and a lower peak RSS than glibc's allocator (docs/benchmarks.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // `.env` of the working directory only, never of a parent directory.
    if let Err(e) = dotenvy::from_path(".env")
        && !e.not_found()
    {
        eprintln!("error: cannot read .env: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    if let Some(why) = cli.contradiction() {
        eprintln!("error: {why}");
        return ExitCode::from(2);
    }
    let default_level = match cli.command {
        Command::Serve(_) => log::LevelFilter::Info,
        _ => log::LevelFilter::Warn,
    };
    init_logging(cli.log_level.unwrap_or(default_level));
    let mut cli = cli;
    let command = std::mem::replace(&mut cli.command, Command::Version);
    let result = match command {
        Command::Version => {
            write_line(&format!("iflow-actix {}", env!("CARGO_PKG_VERSION")));
            Ok(())
        }
        Command::Serve(config) => actix_web::rt::System::new()
            .block_on(iflow_actix::http::server::serve(*config, &cli))
            .map_err(|e| e.to_string()),
        Command::Token(cmd) => actix_web::rt::System::new()
            .block_on(iflow_actix::cli::token::run(cmd, &cli))
            .map_err(|e| e.to_string()),
        Command::Key(cmd) => actix_web::rt::System::new()
            .block_on(iflow_actix::cli::keys::run(cmd, &cli))
            .map_err(|e| e.to_string()),
        Command::Align(cmd) => iflow_actix::cli::align::run(cmd).map_err(|e| e.to_string()),
        Command::Usage { json } => actix_web::rt::System::new()
            .block_on(iflow_actix::cli::usage::run(&cli, json))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

fn init_logging(level: log::LevelFilter) {
    let mut builder = env_logger::Builder::new();
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => builder.parse_filters(&spec),
        // actix-server's start/stop chatter only helps when debugging.
        _ => builder
            .filter_level(level)
            .filter_module("actix_server", level.min(log::LevelFilter::Warn)),
    };
    builder.format_timestamp_millis().init();
}
