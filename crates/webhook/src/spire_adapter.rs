//! The SPIRE client of `scm-spire-api` as the two traits the managers need.

use std::time::Duration;

use futures::future::BoxFuture;
use scm_spiffe::Bundle;

use crate::cabundle::BundleSource;
use crate::cert::spire::{BoxError, SvidMinter};

impl SvidMinter for scm_spire_api::Client {
    fn mint_x509_svid(&self, csr_der: Vec<u8>, ttl: Duration) -> BoxFuture<'_, Result<Vec<Vec<u8>>, BoxError>> {
        Box::pin(async move {
            let svid = scm_spire_api::Client::mint_x509_svid(self, &csr_der, ttl).await?;
            Ok(svid.cert_chain_der)
        })
    }
}

impl BundleSource for scm_spire_api::Client {
    fn get_bundle(&self) -> BoxFuture<'_, Result<Bundle, BoxError>> {
        Box::pin(async move { Ok(scm_spire_api::Client::get_bundle(self).await?) })
    }
}
