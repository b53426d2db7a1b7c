//! SPIFFE IDs and trust domain names, validated exactly as go-spiffe v2 (`spiffeid`) does,
//! with the same error texts. Unlike some Rust SPIFFE crates, upper-case trust domain
//! characters are rejected, not folded.

use std::fmt;

const SCHEME_PREFIX: &str = "spiffe://";

/// A go-spiffe validation failure. The `Display` text matches go-spiffe's error strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("cannot be empty")]
    Empty,
    #[error("scheme is missing or invalid")]
    WrongScheme,
    #[error("trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores")]
    BadTrustDomainChar,
    #[error("trust domain is missing")]
    MissingTrustDomain,
    #[error("path must have a leading slash")]
    NoLeadingSlash,
    #[error("path cannot contain empty segments")]
    EmptySegment,
    #[error("path cannot contain dot segments")]
    DotSegment,
    #[error("path cannot have a trailing slash")]
    TrailingSlash,
    #[error("path segment characters are limited to letters, numbers, dots, dashes, and underscores")]
    BadPathSegmentChar,
}

/// A trust domain name such as `example.org` (no scheme).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// go-spiffe `TrustDomainFromString`: a bare name, or a SPIFFE ID whose trust domain is taken.
    pub fn parse(id_or_name: &str) -> Result<Self, IdError> {
        if id_or_name.is_empty() {
            return Err(IdError::MissingTrustDomain);
        }
        if id_or_name.contains(":/") {
            return SpiffeId::parse(id_or_name).map(|id| id.trust_domain());
        }
        if !id_or_name.bytes().all(is_trust_domain_char) {
            return Err(IdError::BadTrustDomainChar);
        }
        Ok(Self(id_or_name.to_owned()))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// `spiffe://<name>`, the trust domain's own ID.
    pub fn id_string(&self) -> String {
        format!("{SCHEME_PREFIX}{}", self.0)
    }

    /// Builds `spiffe://<td><path>`; `path` must be empty or a valid absolute path.
    pub fn id_with_path(&self, path: &str) -> Result<SpiffeId, IdError> {
        validate_path(path)?;
        Ok(SpiffeId { td_len: self.0.len(), full: format!("{SCHEME_PREFIX}{}{path}", self.0) })
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SPIFFE ID `spiffe://<trust domain><path>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    full: String,
    td_len: usize,
}

impl SpiffeId {
    /// go-spiffe `spiffeid.FromString`.
    pub fn parse(id: &str) -> Result<Self, IdError> {
        if id.is_empty() {
            return Err(IdError::Empty);
        }
        let Some(rest) = id.strip_prefix(SCHEME_PREFIX) else {
            return Err(IdError::WrongScheme);
        };
        let td_len = rest.bytes().position(|c| c == b'/').unwrap_or(rest.len());
        if let Some(bad) = rest[..td_len].bytes().find(|c| !is_trust_domain_char(*c)) {
            let _ = bad;
            return Err(IdError::BadTrustDomainChar);
        }
        if td_len == 0 {
            return Err(IdError::MissingTrustDomain);
        }
        validate_path(&rest[td_len..])?;
        Ok(Self { full: id.to_owned(), td_len })
    }

    /// Builds an ID from its two halves as SPIRE's API carries them.
    pub fn from_parts(trust_domain: &str, path: &str) -> Result<Self, IdError> {
        TrustDomain::parse(trust_domain)?.id_with_path(path)
    }

    pub fn trust_domain_name(&self) -> &str {
        &self.full[SCHEME_PREFIX.len()..SCHEME_PREFIX.len() + self.td_len]
    }

    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_name().to_owned())
    }

    pub fn path(&self) -> &str {
        &self.full[SCHEME_PREFIX.len() + self.td_len..]
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        self.trust_domain_name() == td.name()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// go-spiffe `ValidatePath`.
pub(crate) fn validate_path(path: &str) -> Result<(), IdError> {
    if path.is_empty() {
        return Ok(());
    }
    let bytes = path.as_bytes();
    if bytes[0] != b'/' {
        return Err(IdError::NoLeadingSlash);
    }
    let mut start = 0;
    for (end, &c) in bytes.iter().enumerate() {
        if c == b'/' {
            if end > 0 {
                check_segment(&path[start..end], false)?;
            }
            start = end;
            continue;
        }
        if !is_path_segment_char(c) {
            return Err(IdError::BadPathSegmentChar);
        }
    }
    check_segment(&path[start..], true)
}

fn check_segment(seg: &str, last: bool) -> Result<(), IdError> {
    match seg {
        "/" if last => Err(IdError::TrailingSlash),
        "/" => Err(IdError::EmptySegment),
        "/." | "/.." => Err(IdError::DotSegment),
        _ => Ok(()),
    }
}

fn is_trust_domain_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.' | b'_')
}

fn is_path_segment_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    // Table from go-spiffe's documented rules (spiffeid/id_test.go, trustdomain_test.go).
    #[test]
    fn spiffe_id_table() {
        let ok = [
            "spiffe://example.org",
            "spiffe://example.org/path",
            "spiffe://example.org/path/to/workload",
            "spiffe://a-b_c.d/P.a_t-h/9",
            "spiffe://example.org/.../x",
            "spiffe://example.org/.a",
        ];
        for id in ok {
            let parsed = SpiffeId::parse(id).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(parsed.as_str(), id);
        }
        let bad = [
            ("", IdError::Empty),
            ("example.org", IdError::WrongScheme),
            ("http://example.org", IdError::WrongScheme),
            ("SPIFFE://example.org", IdError::WrongScheme),
            ("spiffe:/example.org", IdError::WrongScheme),
            ("spiffe://", IdError::MissingTrustDomain),
            ("spiffe:///path", IdError::MissingTrustDomain),
            ("spiffe://Example.org", IdError::BadTrustDomainChar),
            ("spiffe://example.org:8080/path", IdError::BadTrustDomainChar),
            ("spiffe://user@example.org/path", IdError::BadTrustDomainChar),
            ("spiffe://example.org/", IdError::TrailingSlash),
            ("spiffe://example.org/path/", IdError::TrailingSlash),
            ("spiffe://example.org//path", IdError::EmptySegment),
            ("spiffe://example.org/./path", IdError::DotSegment),
            ("spiffe://example.org/../path", IdError::DotSegment),
            ("spiffe://example.org/path/..", IdError::DotSegment),
            ("spiffe://example.org/pa th", IdError::BadPathSegmentChar),
            ("spiffe://example.org/path?query", IdError::BadPathSegmentChar),
            ("spiffe://example.org/path#frag", IdError::BadPathSegmentChar),
            ("spiffe://example.org/p%41th", IdError::BadPathSegmentChar),
        ];
        for (id, want) in bad {
            assert_eq!(SpiffeId::parse(id), Err(want), "{id:?}");
        }
    }

    #[test]
    fn parts() {
        let id = SpiffeId::parse("spiffe://example.org/ns/default/sa/web").unwrap();
        assert_eq!(id.trust_domain_name(), "example.org");
        assert_eq!(id.path(), "/ns/default/sa/web");
        assert_eq!(SpiffeId::from_parts("example.org", "/ns/default/sa/web").unwrap(), id);
        assert!(id.is_member_of(&TrustDomain::parse("example.org").unwrap()));
        assert!(!id.is_member_of(&TrustDomain::parse("other.org").unwrap()));
        assert_eq!(SpiffeId::from_parts("example.org", "").unwrap().as_str(), "spiffe://example.org");
        assert_eq!(SpiffeId::from_parts("example.org", "x"), Err(IdError::NoLeadingSlash));
    }

    #[test]
    fn trust_domain_table() {
        for ok in ["example.org", "a", "x-y_z.0", "spiffe://example.org/path"] {
            assert!(TrustDomain::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(TrustDomain::parse("spiffe://example.org/p").unwrap().name(), "example.org");
        assert_eq!(TrustDomain::parse(""), Err(IdError::MissingTrustDomain));
        assert_eq!(TrustDomain::parse("Example.org"), Err(IdError::BadTrustDomainChar));
        assert_eq!(TrustDomain::parse("example.org:443"), Err(IdError::BadTrustDomainChar));
        assert_eq!(TrustDomain::parse("spiffe://"), Err(IdError::MissingTrustDomain));
        assert_eq!(TrustDomain::parse("spiffe://EX"), Err(IdError::BadTrustDomainChar));
        assert_eq!(
            IdError::BadTrustDomainChar.to_string(),
            "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
        );
    }
}
