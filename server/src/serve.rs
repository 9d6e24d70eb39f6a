//! Serving a role: its gRPC services plus `grpc.health.v1` and gRPC reflection, on a listener,
//! behind mutual TLS with the other roles, until shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::shutdown::Shutdown;
use crate::tls::internal::{InternalAuthLayer, InternalTls};

/// Health (reporting `services` and the server as a whole as serving) and reflection over every
/// Juntos service.
pub async fn local_routes(services: &[&str]) -> Result<Routes, String> {
    health_and_reflection(services, juntos_proto::FILE_DESCRIPTOR_SET).await
}

/// Health (reporting `services` and the server as a whole as serving) and reflection over the
/// services the encoded `descriptors` set describes.
pub async fn health_and_reflection(
    services: &[impl AsRef<str>],
    descriptors: &[u8],
) -> Result<Routes, String> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in services {
        reporter
            .set_service_status(name.as_ref(), ServingStatus::Serving)
            .await;
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptors)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = reflection()
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| format!("reflection: {e}"))?;
    Ok(Routes::new(health).add_service(v1).add_service(v1alpha))
}

/// Serves `routes` on `listener` to callers with an internal certificate from `tls`'s CA
/// ([`crate::tls::internal`]) until `shutdown`, then waits at most `drain` for open calls.
pub async fn serve(
    role: &str,
    listener: TcpListener,
    routes: Routes,
    tls: Arc<InternalTls>,
    shutdown: Shutdown,
    drain: Duration,
) -> Result<(), String> {
    let incoming = tls.incoming(listener);
    let server = tonic::transport::Server::builder()
        // Every call is checked against the caller's certificate before any service sees it.
        .layer(InternalAuthLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().wait_owned());
    let mut server = std::pin::pin!(server);
    let mut deadline = shutdown;
    tokio::select! {
        result = server.as_mut() => result.map_err(|e| format!("{role}: {e}")),
        () = async { deadline.wait().await; tokio::time::sleep(drain).await } => {
            tracing::warn!(role, "drain time over; closing remaining calls");
            Ok(())
        }
    }
}
