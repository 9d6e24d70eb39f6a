//! The account commands: `request-code`, `sign-in`, `whoami` and `sign-out`.

use juntos_client::{Client, ClientError};

/// The longest device name the server accepts, in characters.
const MAX_DEVICE_NAME_CHARS: usize = 64;

/// `request-code`: texts a sign-in code to `phone`.
pub(crate) async fn request_code(client: &Client, phone: String) -> Result<(), ClientError> {
    let sent = client.request_code(phone).await?;
    println!("code sent; it expires in {} s", sent.expires_in_seconds);
    Ok(())
}

/// `sign-in`: signs this device in with the texted code.
pub(crate) async fn sign_in(
    client: &Client,
    phone: String,
    code: String,
    device_name: Option<String>,
) -> Result<(), ClientError> {
    let name = device_name.unwrap_or_else(default_device_name);
    let account = client.sign_in(phone, code, name).await?;
    println!(
        "signed in{}",
        if account.new_account {
            " (new account)"
        } else {
            ""
        }
    );
    println!("user {}", account.user_id);
    println!("device {}", account.device_id);
    Ok(())
}

/// `whoami`: the signed-in user and device, as the server knows them.
pub(crate) async fn whoami(client: &Client) -> Result<(), ClientError> {
    let me = client.me().await?;
    println!("user {}", me.user_id);
    println!("device {}", me.device_id);
    Ok(())
}

/// `sign-out`: signs this device out and forgets its keys.
pub(crate) async fn sign_out(client: &Client) -> Result<(), ClientError> {
    client.sign_out().await?;
    println!("signed out");
    Ok(())
}

/// "juntos-cli on <host name>", within the server's length limit.
fn default_device_name() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "linux".to_owned());
    "juntos-cli on "
        .chars()
        .chain(host.chars())
        .take(MAX_DEVICE_NAME_CHARS)
        .collect()
}
