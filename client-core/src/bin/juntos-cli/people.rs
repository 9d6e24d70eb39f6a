//! What you may see of other people: the `presence` and `profiles` commands, and the presence
//! line.

use juntos_client::{Client, ClientError, PresenceInfo};

/// `presence`: whether `peers` are online, or when they were last seen (those you may see).
pub(crate) async fn presence(client: &Client, peers: Vec<String>) -> Result<(), ClientError> {
    let seen = client.presence().get(peers).await?;
    if seen.is_empty() {
        println!("nobody you may see");
    }
    for p in &seen {
        println!("{}", presence_line(p));
    }
    Ok(())
}

/// `profiles`: the names and about lines of `peers` (those you may see).
pub(crate) async fn profiles(client: &Client, peers: Vec<String>) -> Result<(), ClientError> {
    let seen = client.profile().get(peers).await?;
    if seen.is_empty() {
        println!("nobody you may see");
    }
    for p in seen {
        println!("{} name={:?} about={:?}", p.user_id, p.name, p.about);
    }
    Ok(())
}

/// `<user> online`, `<user> last seen <ms>`, `<user> never seen` or `<user> hidden`.
pub(crate) fn presence_line(p: &PresenceInfo) -> String {
    match (p.visible, p.online, p.last_seen_ms) {
        (false, _, _) => format!("{} hidden", p.user_id),
        (true, true, _) => format!("{} online", p.user_id),
        (true, false, Some(ms)) => format!("{} last seen {ms}", p.user_id),
        (true, false, None) => format!("{} never seen", p.user_id),
    }
}
