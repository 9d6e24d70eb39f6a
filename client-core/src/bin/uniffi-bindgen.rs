//! `uniffi-bindgen`: generates the Kotlin, Swift and Python bindings of client-core (feature
//! `bindgen`; see scripts/test.sh).

#![forbid(unsafe_code)]

fn main() {
    uniffi::uniffi_bindgen_main()
}
