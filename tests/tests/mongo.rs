//! `juntos all --mongodb-uri`: login keeps accounts, devices and tokens, and chat its
//! mailboxes, in MongoDB (SecantusDB here, or the server at `JUNTOS_TEST_MONGODB_URI`), driven
//! through the gateway with client-core.

use std::time::Duration;

use juntos_tests::clients::{another_device, sign_in_with_code};
use juntos_tests::{ALICE, MongoTestServer, System, unique_database};

#[tokio::test]
async fn sign_in_twice_with_login_on_mongodb() {
    // Declared first so it stops last, after `juntos all`.
    let mongo = tokio::task::spawn_blocking(MongoTestServer::start)
        .await
        .expect("start mongo");
    let uri = mongo.uri_with_database(&unique_database("e2e"));
    let sys = System::builder().arg("--mongodb-uri", &uri).start().await;

    let phone = sys.client("phone");
    let first = sign_in_with_code(&sys, &phone, "phone", ALICE).await;
    assert!(first.new_account);

    // The same account on a second device.
    sys.advance_clock(Duration::from_secs(31));
    let (laptop, second) = another_device(&sys, "laptop", ALICE).await;
    assert!(!second.new_account);
    assert_eq!(second.user_id, first.user_id);
    assert_ne!(second.device_id, first.device_id);
    let me = laptop.me().await.expect("me");
    assert_eq!(me.phone, ALICE);
    assert_eq!(me.devices.len(), 2, "both devices are listed");

    assert!(
        !sys.data_dir().join("login.db").exists(),
        "login used MongoDB, not SQLite"
    );
    assert!(
        !sys.data_dir().join("chat.db").exists(),
        "chat used MongoDB, not SQLite"
    );
}
