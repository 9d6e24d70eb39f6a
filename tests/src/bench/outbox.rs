//! Sign-in codes from the console SMS outbox (`sms-outbox.jsonl` in the server's data
//! directory): re-read whole per poll for the few devices of scenario `pairs`
//! ([`codes_sent`], [`wait_for_code`]), read incrementally and shared for the up to 1,024
//! members of scenario `group` ([`Outbox`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::bench::error::BenchError;

/// The bodies of every SMS the console outbox holds for `phone`, oldest first.
pub(crate) fn codes_sent(outbox: &Path, phone: &str) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(outbox) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["to"] == phone)
        .filter_map(|v| v["body"].as_str().map(str::to_owned))
        .collect()
}

/// The code of the first SMS to `phone` after the `before` it already had.
pub(crate) async fn wait_for_code(
    outbox: &Path,
    phone: &str,
    before: usize,
) -> Result<String, BenchError> {
    for _ in 0..500 {
        if let Some(body) = codes_sent(outbox, phone).get(before) {
            return crate::extract_code(body)
                .ok_or_else(|| BenchError::Setup("an SMS without a 6-digit code".to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(BenchError::Setup(format!(
        "no code appeared in {} (does the server use --sms console with this data directory?)",
        outbox.display()
    )))
}

/// The console SMS outbox, read incrementally and shared by every sign-in (re-reading the
/// whole file per poll would cost more than the sign-ins with a thousand numbers).
pub(crate) struct Outbox {
    pub(crate) path: PathBuf,
    pub(crate) state: Mutex<OutboxState>,
}

#[derive(Default)]
pub(crate) struct OutboxState {
    /// Bytes of the file already read.
    pub(crate) offset: u64,
    /// An incomplete last line.
    pub(crate) partial: Vec<u8>,
    /// Every SMS body, by number, oldest first.
    pub(crate) bodies: HashMap<String, Vec<String>>,
}

impl Outbox {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            state: Mutex::new(OutboxState::default()),
        }
    }

    /// The bodies sent to `phone` so far, after reading what was appended.
    pub(crate) fn with_bodies<T>(&self, phone: &str, f: impl FnOnce(&[String]) -> T) -> T {
        use std::io::{Read, Seek, SeekFrom};
        let mut state = juntos_store::lock(&self.state);
        if let Ok(mut file) = std::fs::File::open(&self.path)
            && file.seek(SeekFrom::Start(state.offset)).is_ok()
        {
            let mut bytes = Vec::new();
            if file.read_to_end(&mut bytes).is_ok() {
                state.offset += bytes.len() as u64;
                state.partial.extend_from_slice(&bytes);
                while let Some(end) = state.partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = state.partial.drain(..=end).collect();
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
                        continue;
                    };
                    if let (Some(to), Some(body)) = (v["to"].as_str(), v["body"].as_str()) {
                        state
                            .bodies
                            .entry(to.to_owned())
                            .or_default()
                            .push(body.to_owned());
                    }
                }
            }
        }
        f(state.bodies.get(phone).map_or(&[], Vec::as_slice))
    }

    pub(crate) fn count(&self, phone: &str) -> usize {
        self.with_bodies(phone, <[String]>::len)
    }

    /// The code of the first SMS to `phone` after the `before` it already had.
    pub(crate) async fn code_after(
        &self,
        phone: &str,
        before: usize,
    ) -> Result<String, BenchError> {
        for _ in 0..1000 {
            if let Some(body) = self.with_bodies(phone, |b| b.get(before).cloned()) {
                return crate::extract_code(&body)
                    .ok_or_else(|| BenchError::Setup("an SMS without a 6-digit code".to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(BenchError::Setup(format!(
            "no code appeared in {} (does the server use --sms console with this data directory?)",
            self.path.display()
        )))
    }
}
