//! Graceful shutdown: one trigger, any number of listeners.
//!
//! SIGTERM (or Ctrl-C) fires the trigger; every server stops accepting, lets open calls and
//! streams finish for a bounded drain time, and the process exits. The trigger and its listeners
//! live in `juntos-store` (shared with the services, whose streams end on it) and are re-exported
//! here; this module adds [`signal`].

pub use juntos_store::{Shutdown, ShutdownTrigger, shutdown_channel as channel};

/// Resolves on SIGTERM or Ctrl-C.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
