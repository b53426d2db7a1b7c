//! Any bytes as a SPIFFE bundle (JWKS), as a ClusterFederatedTrustDomain carries one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scm_spiffe::{Bundle, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let td = TrustDomain::parse("example.org").unwrap();
    if let Ok(b) = Bundle::parse_jwks(td, data) {
        let _ = b.to_jwks();
        let _ = b.x509_authorities_pem();
    }
});
