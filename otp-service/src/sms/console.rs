//! The development sender: prints the message and appends it to a JSON-lines outbox file.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{SmsError, SmsSender};
use crate::phone::mask_phone;

/// Prints `[sms] to=<masked number> text="<body>"` to stdout and appends
/// `{"to": "<E.164>", "body": "<text>"}` as one line to the outbox file, which tests and
/// `juntos-cli` walkthroughs read the code from.
#[derive(Debug)]
pub struct ConsoleSender {
    outbox_path: PathBuf,
    /// Serialises writers so lines never interleave.
    lock: Mutex<()>,
}

#[derive(Serialize)]
struct OutboxLine<'a> {
    to: &'a str,
    body: &'a str,
}

impl ConsoleSender {
    /// A sender appending to `outbox_path` (created, with its parent directory, on first send).
    pub fn new(outbox_path: PathBuf) -> Self {
        Self {
            outbox_path,
            lock: Mutex::new(()),
        }
    }

    async fn append(&self, line: &[u8]) -> std::io::Result<()> {
        if let Some(parent) = self
            .outbox_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.outbox_path)
            .await?;
        file.write_all(line).await?;
        file.flush().await?;
        file.sync_data().await
    }
}

#[async_trait]
impl SmsSender for ConsoleSender {
    async fn send(&self, to_e164: &str, body: &str) -> Result<(), SmsError> {
        let mut line = serde_json::to_vec(&OutboxLine { to: to_e164, body })
            .expect("two strings always serialise");
        line.push(b'\n');
        let _guard = self.lock.lock().await;
        println!("[sms] to={} text={:?}", mask_phone(to_e164), body);
        self.append(&line).await.map_err(|e| SmsError::Unavailable {
            detail: format!("could not write the SMS outbox: {}", e.kind()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn appends_one_json_line_per_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data/sms-outbox.jsonl");
        let sender = Arc::new(ConsoleSender::new(path.clone()));
        sender
            .send("+12015550123", "Your code is \"1\"")
            .await
            .expect("send");
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let sender = sender.clone();
                tokio::spawn(async move { sender.send("+447400123456", &format!("m{i}")).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("join").expect("send");
        }
        let text = std::fs::read_to_string(&path).expect("outbox");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 21);
        assert_eq!(
            lines[0],
            serde_json::json!({"to": "+12015550123", "body": "Your code is \"1\""})
        );
        assert!(text.starts_with(r#"{"to":"+12015550123","body":"#));
        assert!(lines[1..].iter().all(|l| l["to"] == "+447400123456"));
    }

    #[tokio::test]
    async fn unwritable_outbox_is_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The outbox path is a directory: opening it for append fails.
        let sender = ConsoleSender::new(dir.path().to_path_buf());
        let err = sender
            .send("+12015550123", "x")
            .await
            .expect_err("cannot write");
        assert!(matches!(err, SmsError::Unavailable { .. }), "{err:?}");
    }
}
