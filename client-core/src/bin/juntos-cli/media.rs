//! The attachment commands: `send-file` and `download` (encrypted on this device, with a
//! progress bar for slow transfers).

use std::path::Path;

use juntos_client::{Client, ClientError};

use crate::common::{catch_up, path_string, report_send};
use crate::progress::Bar;

/// `send-file`: uploads `path` for `to` (resuming an interrupted upload) and sends it.
pub(crate) async fn send_file(
    client: &Client,
    to: String,
    path: &Path,
    caption: String,
) -> Result<(), ClientError> {
    let bar = Bar::new("uploading");
    let message = client
        .media()
        .send_file(to, path_string(path)?, caption, Some(bar.clone()))
        .await;
    bar.done();
    report_send(client, &message?).await?;
    Ok(())
}

/// `download`: downloads, checks and decrypts a message's attachment into `out` (or the home
/// directory's media folder).
pub(crate) async fn download(
    client: &Client,
    message_id: String,
    out: Option<&Path>,
) -> Result<(), ClientError> {
    catch_up(client).await;
    let out = out.map(path_string).transpose()?;
    let bar = Bar::new("downloading");
    let saved = client
        .media()
        .download(message_id, out, Some(bar.clone()))
        .await;
    bar.done();
    println!("saved {}", saved?);
    Ok(())
}
