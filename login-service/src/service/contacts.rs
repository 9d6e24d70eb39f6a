//! Contact discovery (`Directory.ResolvePhones`): which phone numbers belong to users, recorded
//! as the caller's contacts (the "mutual contacts" the visibility rule in [`super::settings`]
//! relies on).

use std::collections::HashSet;

use juntos_proto::login::v1::{ResolvePhonesResponse, ResolvedContact};
use juntos_proto::meta::Caller;

use super::{LoginService, check_batch};
use crate::error::Result;
use crate::phone;

/// Most phone numbers one `ResolvePhones` call may carry.
pub const MAX_RESOLVE_PHONES: usize = 1_000;

impl LoginService {
    /// `Directory.ResolvePhones`: which of up to [`MAX_RESOLVE_PHONES`] numbers (counted as
    /// sent) belong to users, answered in normalised E.164, once per number; those users
    /// (except the caller, who is answered but not recorded) become the caller's contacts.
    /// Numbers that are not strict, valid E.164 are skipped.
    pub async fn resolve_phones(
        &self,
        caller: &Caller,
        phones: Vec<String>,
    ) -> Result<ResolvePhonesResponse> {
        self.require_active_session(caller).await?;
        check_batch(phones.len(), MAX_RESOLVE_PHONES, "phone numbers")?;
        let asked = phones.len();
        let mut seen = HashSet::new();
        let normalised: Vec<String> = phones
            .iter()
            .filter_map(|p| phone::normalise_e164(p))
            .filter(|p| seen.insert(p.clone()))
            .collect();
        let found = self.store.users_by_phones(&normalised).await?;
        let contacts: Vec<(String, String)> = found
            .iter()
            .filter(|(_, user_id)| *user_id != caller.user_id)
            .map(|(phone, user_id)| (user_id.clone(), phone.clone()))
            .collect();
        if !contacts.is_empty() {
            self.store
                .add_contacts(&caller.user_id, &contacts, self.clock.now_ms())
                .await?;
        }
        // Counts only: never the numbers.
        tracing::debug!(
            user_id = %caller.user_id,
            asked,
            valid = normalised.len(),
            found = found.len(),
            "phones resolved"
        );
        Ok(ResolvePhonesResponse {
            contacts: found
                .into_iter()
                .map(|(phone, user_id)| ResolvedContact { phone, user_id })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use juntos_clock::Clock as _;

    use crate::store::LoginStore as _;
    use crate::test_support::{ANA, BEA, CAI, Harness};

    #[tokio::test]
    async fn resolve_phones_records_contacts_and_skips_junk() {
        let h = Harness::new();
        let ana = h.sign_in_as(ANA, "ana laptop").await;
        let bea = h.sign_in_as(BEA, "bea phone").await;
        let cai = h.sign_in_as(CAI, "cai phone").await;

        h.clock.advance_ms(500);
        let resolved = h
            .service
            .resolve_phones(
                &ana,
                vec![
                    "+1 201 555 0123".into(), // not strict E.164: skipped
                    CAI.into(),
                    "12015550123".into(),
                    "+19999999999".into(), // invalid number
                    "+12015550125".into(), // valid, nobody's
                    "garbage".into(),
                    ANA.into(), // the caller: answered, not recorded
                    BEA.into(),
                    CAI.into(), // repeated: answered once
                ],
            )
            .await
            .expect("resolve");
        let found: Vec<(&str, &str)> = resolved
            .contacts
            .iter()
            .map(|c| (c.phone.as_str(), c.user_id.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (CAI, cai.user_id.as_str()),
                (ANA, ana.user_id.as_str()),
                (BEA, bea.user_id.as_str()),
            ]
        );

        let contacts = h.store.contacts(&ana.user_id).await.expect("contacts");
        let recorded: Vec<(&str, &str, i64)> = contacts
            .iter()
            .map(|c| (c.user_id.as_str(), c.phone.as_str(), c.added_at_ms))
            .collect();
        let now = h.clock.now_ms();
        let mut expected = vec![
            (bea.user_id.as_str(), BEA, now),
            (cai.user_id.as_str(), CAI, now),
        ];
        expected.sort();
        assert_eq!(recorded, expected);
        assert!(
            h.store
                .contacts(&bea.user_id)
                .await
                .expect("contacts")
                .is_empty(),
            "contacts are one-way"
        );

        // Nothing found: nothing recorded, no error.
        let none = h
            .service
            .resolve_phones(&bea, vec!["junk".into(), "+12015550125".into()])
            .await
            .expect("resolve");
        assert!(none.contacts.is_empty());
        assert!(
            h.store
                .contacts(&bea.user_id)
                .await
                .expect("contacts")
                .is_empty()
        );
    }
}
