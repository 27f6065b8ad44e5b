//! The `lightbase` command line: parses the config and hands over to the library.

use std::net::TcpListener;
use std::process::ExitCode;

use clap::Parser;
use lightbase::config::{Cli, Command, Config, ServeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LIGHTBASE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match &cli.command {
        Command::Serve(args) => serve(&cli, args),
        Command::ErrorsDoc => {
            print!("{}", lightbase::error::errors_markdown());
            Ok(())
        }
        admin => Config::resolve(&cli.global, &ServeArgs::default())
            .and_then(|c| lightbase::cli::run(&c.dir, admin))
            .map(|out| {
                if !out.is_empty() {
                    println!("{out}");
                }
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: &Cli, args: &ServeArgs) -> Result<(), String> {
    let config = Config::resolve(&cli.global, args)?;
    let listener = TcpListener::bind(config.http).map_err(|e| format!("cannot listen on {}: {e}", config.http))?;
    tracing::info!(
        http = %config.http,
        dir = %config.dir.display(),
        version = env!("CARGO_PKG_VERSION"),
        "lightbase listening"
    );
    actix_web::rt::System::new()
        .block_on(lightbase::run(listener, config, shutdown_signal()))
        .map_err(|e| e.to_string())
}

/// SIGINT or SIGTERM: both shut down gracefully.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
