//! What the gateway itself answers: `grpc.health.v1` and gRPC reflection, both covering only
//! what a client may call through it. Reflection describes the public services with only their
//! public methods (internal ones such as `LoginInternal` or `Otp.VerifyCode` are left out), and
//! health reports each public service.

use prost::Message;
use prost_types::FileDescriptorSet;
use tonic::service::Routes;

use super::routes::{Route, route};

/// The descriptor set of the public services and methods.
pub fn public_descriptors() -> Result<(Vec<u8>, Vec<String>), String> {
    let mut set = FileDescriptorSet::decode(juntos_proto::FILE_DESCRIPTOR_SET)
        .map_err(|e| format!("reflection: bad descriptor set: {e}"))?;
    let mut services = Vec::new();
    for file in &mut set.file {
        let package = file.package.clone().unwrap_or_default();
        for service in &mut file.service {
            let name = format!("{package}.{}", service.name());
            service.method.retain(|method| {
                matches!(
                    route(&format!("/{name}/{}", method.name())),
                    Route::Forward(..)
                )
            });
            if !service.method.is_empty() {
                services.push(name);
            }
        }
        file.service.retain(|service| !service.method.is_empty());
    }
    Ok((set.encode_to_vec(), services))
}

/// Health (each public service serving) and reflection (public services only).
pub async fn public_routes() -> Result<Routes, String> {
    let (descriptors, services) = public_descriptors()?;
    crate::serve::health_and_reflection(&services, &descriptors).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_services_and_methods_are_described() {
        let (bytes, services) = public_descriptors().expect("descriptors");
        assert!(services.contains(&"juntos.otp.v1.Otp".to_owned()));
        assert!(services.contains(&"juntos.chat.v1.Chat".to_owned()));
        assert!(!services.iter().any(|s| s.ends_with("LoginInternal")));
        let set = FileDescriptorSet::decode(bytes.as_slice()).expect("decode");
        let otp = set
            .file
            .iter()
            .flat_map(|f| &f.service)
            .find(|s| s.name() == "Otp")
            .expect("otp");
        let methods: Vec<&str> = otp.method.iter().map(|m| m.name()).collect();
        assert_eq!(methods, ["RequestCode"], "VerifyCode is internal");
    }
}
