//! The server interceptor: authenticates every call of the API services
//! and puts its `Principal` into the request, or refuses it with the
//! status `ApiError` maps the refusal to.

use super::error::ApiError;
use crate::auth::Authenticator;

/// A tonic interceptor for `auth`.
pub fn interceptor(
    auth: &Authenticator,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone + use<> {
    let auth = auth.clone();
    move |mut request: tonic::Request<()>| {
        let names = request
            .peer_certs()
            .and_then(|certs| {
                certs
                    .first()
                    .map(|cert| crate::tls::certificate_names(cert))
            })
            .unwrap_or_default();
        let peer = request.remote_addr().map(|addr| addr.ip());
        let principal = auth
            .authenticate_call(request.metadata(), &names, peer)
            .map_err(|error| tonic::Status::from(ApiError::from(error)))?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}
