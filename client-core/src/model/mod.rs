//! The domain's plain data, below both the store and the messaging layer: what apps see
//! (`records`, uniffi records), what travels inside the ciphertext (`content`), and this device's
//! signed-in state (`session`).

pub(crate) mod content;
pub(crate) mod records;
pub(crate) mod session;
