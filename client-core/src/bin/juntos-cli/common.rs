//! Helpers the commands share: the exit code and error line, sending what was queued, catching
//! up before showing local state, and paths as the client takes them.

use std::path::Path;
use std::process::ExitCode;

use juntos_client::{Client, ClientError, Message};

/// Success, or the `error: <what happened>` line on stderr and exit code 1.
pub(crate) fn exit_code(result: Result<(), ClientError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints where a just-queued message is after trying to send it. Offline, or with the
/// server's certificate refused, it stays queued (the outbox waits for both) and the run
/// succeeds; the line says why it did not go.
pub(crate) async fn report_send(client: &Client, message: &Message) -> Result<(), ClientError> {
    match client.flush_outbox().await {
        Ok(0) => println!("sent {}", message.message_id),
        Ok(_) | Err(ClientError::Network { .. }) => println!(
            "queued {} (offline: it goes out on the next run)",
            message.message_id
        ),
        Err(e @ ClientError::Certificate { .. }) => println!(
            "queued {} (not sent, {e}; it goes out on a run after that is fixed)",
            message.message_id
        ),
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Fetches what is waiting and sends what is queued; failures (offline) are only noted.
pub(crate) async fn catch_up(client: &Client) {
    if let Err(e) = client.sync_now().await {
        eprintln!("note: showing local history only ({e})");
    }
    let _ = client.flush_outbox().await;
}

pub(crate) fn path_string(path: &Path) -> Result<String, ClientError> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| ClientError::InvalidInput {
            message: "the path is not valid UTF-8".to_owned(),
        })
}
