//! This user's own profile and privacy: the `profile` command (name, about line, `profile
//! photo`) and the `privacy` command.

use std::path::PathBuf;

use clap::Subcommand;
use juntos_client::{Client, ClientError, Settings, Visibility};

use crate::common::path_string;

/// The `profile` subcommand.
#[derive(Debug, Subcommand)]
pub(crate) enum ProfileCommand {
    /// Set your profile photo (JPEG, PNG or WebP), remove it, or fetch someone's.
    Photo {
        /// The image to set.
        #[arg(required_unless_present_any = ["delete", "of"])]
        path: Option<PathBuf>,
        /// Remove your photo.
        #[arg(long, conflicts_with_all = ["path", "of"])]
        delete: bool,
        /// Fetch this person's photo (E.164 or user id) into --out.
        #[arg(long, requires = "out", conflicts_with = "path")]
        of: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
        /// The 96x96 version instead of 640x640.
        #[arg(long)]
        small: bool,
    },
}

/// `profile`: shows this user's profile and privacy, after changing the name or about line
/// when either is given.
pub(crate) async fn profile(
    client: &Client,
    name: Option<String>,
    about: Option<String>,
) -> Result<(), ClientError> {
    let settings = if name.is_none() && about.is_none() {
        client.profile().settings().await?
    } else {
        client.profile().update(name, about).await?
    };
    print_settings(&settings);
    Ok(())
}

/// `profile photo`: sets or removes this user's photo, or saves someone's.
pub(crate) async fn photo(client: &Client, command: ProfileCommand) -> Result<(), ClientError> {
    let ProfileCommand::Photo {
        path,
        delete,
        of,
        out,
        small,
    } = command;
    if delete {
        client.profile().delete_photo().await?;
        println!("profile photo removed");
    } else if let (Some(peer), Some(out)) = (of, out) {
        let jpeg = client.profile().photo(peer, small).await?;
        std::fs::write(&out, &jpeg)?;
        println!("saved {} ({} bytes)", out.display(), jpeg.len());
    } else if let Some(path) = path {
        let version = client.profile().set_photo(path_string(&path)?).await?;
        println!("profile photo set (version {version})");
    }
    Ok(())
}

/// `privacy`: shows who sees this user's presence and profile, after changing either when
/// given.
pub(crate) async fn privacy(
    client: &Client,
    presence: Option<Visibility>,
    profile: Option<Visibility>,
) -> Result<(), ClientError> {
    let settings = if presence.is_none() && profile.is_none() {
        client.profile().settings().await?
    } else {
        client.profile().set_privacy(presence, profile).await?
    };
    print_settings(&settings);
    Ok(())
}

fn print_settings(s: &Settings) {
    let word = |v: Visibility| match v {
        Visibility::Contacts => "contacts",
        Visibility::Nobody => "nobody",
    };
    println!("name {:?}", s.name);
    println!("about {:?}", s.about);
    println!("presence visible to {}", word(s.presence));
    println!("profile visible to {}", word(s.profile));
}
