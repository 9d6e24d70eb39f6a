//! `juntos`: every Juntos role in one binary. `juntos all` runs the whole system on embedded
//! defaults; `juntos gateway|otp|login|chat|media` runs one role, as a Kubernetes pod does.

#![forbid(unsafe_code)]

use clap::Parser;
use juntos_server::cli::{Cli, Role};
use juntos_server::{roles, shutdown};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Role::Certs(args) = &cli.role {
        return match roles::run_certs(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("juntos: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let (trigger, shutdown) = shutdown::channel();
    let started = match cli.role {
        Role::All(args) => roles::run_all(args, shutdown).await,
        Role::Gateway(args) => roles::run_gateway(args, shutdown).await,
        Role::Otp(args) => roles::run_otp(args, shutdown).await,
        Role::Login(args) => roles::run_login(args, shutdown).await,
        Role::Chat(args) => roles::run_chat(args, shutdown).await,
        Role::Media(args) => roles::run_media(args, shutdown).await,
        Role::Certs(_) => unreachable!("handled before the runtime's roles start"),
    };
    let tasks = match started {
        Ok(tasks) => tasks,
        Err(e) => {
            eprintln!("juntos: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut tasks = tasks;
    let mut failed = false;
    tokio::select! {
        () = shutdown::signal() => {
            tracing::info!("shutting down: draining open calls");
        }
        // A role that stops on its own is a failure; the others stop too.
        (ended, index, _) = futures_util::future::select_all(tasks.iter_mut()) => {
            tasks.swap_remove(index);
            report(ended, &mut failed);
            failed = true;
        }
    }
    trigger.fire();
    for task in tasks {
        report(task.await, &mut failed);
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

fn report(ended: Result<Result<(), String>, tokio::task::JoinError>, failed: &mut bool) {
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("juntos: {e}");
            *failed = true;
        }
        Err(e) => {
            eprintln!("juntos: a role crashed: {e}");
            *failed = true;
        }
    }
}
