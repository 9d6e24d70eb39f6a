//! A member of scenario `group`: a client-core `Client` with a fresh home, signed in with its
//! own number.

use std::path::Path;
use std::sync::Arc;

use juntos_client::Client;

use crate::bench::error::{BenchError, client_err};
use crate::bench::outbox::Outbox;

/// Area codes of the group scenario's numbers: +1 <area> 555-0100 … 0199 (fictional), 100 per
/// area code.
pub(super) const GROUP_AREA_CODES: [u32; 11] =
    [201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213];

/// The sign-in number of group member `index`: +1 AAA 555-0100 … 0199 (fictional), 100 per
/// area code of [`GROUP_AREA_CODES`].
pub(super) fn group_phone(index: u32) -> String {
    let area = GROUP_AREA_CODES[(index / 100) as usize];
    format!("+1{area}555{:04}", 100 + index % 100)
}

/// A client-core client for member `index`, signed in with a fresh home.
pub(super) async fn sign_in_member(
    url: &str,
    home: &Path,
    outbox: &Outbox,
    index: u32,
) -> Result<Arc<Client>, BenchError> {
    let home = home
        .to_str()
        .ok_or_else(|| BenchError::Setup("the temporary directory is not UTF-8".to_owned()))?;
    let member = Client::new(url.to_owned(), home.to_owned()).map_err(client_err("Client::new"))?;
    let phone = group_phone(index);
    let before = outbox.count(&phone);
    member
        .request_code(phone.clone())
        .await
        .map_err(client_err("request_code"))?;
    let code = outbox.code_after(&phone, before).await?;
    member
        .sign_in(phone, code, format!("bench-{index}"))
        .await
        .map_err(client_err("sign_in"))?;
    Ok(member)
}
