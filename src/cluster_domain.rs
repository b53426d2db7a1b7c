//! `clusterDomain` autodetection, as upstream does it: the canonical name of
//! `kubernetes.default.svc` (found through the resolver's search list, following CNAMEs)
//! minus that prefix — `kubernetes.default.svc.cluster.local.` gives `cluster.local`.
//! When no name server answers, the search list itself is the fallback: its
//! `svc.<domain>` entry names the domain inside a pod.
//!
//! A small stub resolver over UDP (one A query per search domain, 2 s each): the packet
//! building and parsing below are pure and unit-tested.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

const SERVICE: &str = "kubernetes.default.svc";

/// What `/etc/resolv.conf` says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<SocketAddr>,
    pub search: Vec<String>,
}

pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut out = ResolvConf::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse::<std::net::IpAddr>().ok()) {
                    out.nameservers.push(SocketAddr::new(ip, 53));
                }
            }
            Some("search") | Some("domain") => {
                out.search = words.map(|w| w.trim_end_matches('.').to_owned()).filter(|w| !w.is_empty()).collect();
            }
            _ => {}
        }
    }
    out
}

/// A DNS query for the A record of `name` with id `id`.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    q
}

/// Reads a (possibly compressed) name at `pos`; returns it and the position after it.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            return Some((labels.join("."), end.unwrap_or(pos + 1)));
        }
        if len & 0xC0 == 0xC0 {
            let ptr = ((len & 0x3F) << 8) | *msg.get(pos + 1)? as usize;
            end.get_or_insert(pos + 2);
            pos = ptr;
            continue;
        }
        labels.push(String::from_utf8_lossy(msg.get(pos + 1..pos + 1 + len)?).into_owned());
        pos += 1 + len;
    }
    None
}

/// The canonical name an answer to [`query`] `id` gives for `name` (the CNAME chain
/// followed), or `None` for an error, a mismatched id or no answer.
pub fn canonical_name(msg: &[u8], id: u16, name: &str) -> Option<String> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id || msg[3] & 0x0F != 0 {
        return None;
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let mut current = name.trim_end_matches('.').to_ascii_lowercase();
    let mut found = false;
    for _ in 0..an {
        let (owner, after) = read_name(msg, pos)?;
        let rtype = u16::from_be_bytes([*msg.get(after)?, *msg.get(after + 1)?]);
        let rdlen = u16::from_be_bytes([*msg.get(after + 8)?, *msg.get(after + 9)?]) as usize;
        let rdata = after + 10;
        if owner.eq_ignore_ascii_case(&current) {
            found = true;
            if rtype == 5 {
                current = read_name(msg, rdata)?.0.to_ascii_lowercase();
            }
        }
        pos = rdata + rdlen;
    }
    found.then_some(current)
}

/// `cluster.local` from `kubernetes.default.svc.cluster.local`.
pub fn domain_of(canonical: &str) -> Option<String> {
    let rest = canonical.trim_end_matches('.').strip_prefix(SERVICE)?.strip_prefix('.')?;
    (!rest.is_empty()).then(|| rest.to_owned())
}

/// Asks every name server for `kubernetes.default.svc.<search domain>`, all queries at
/// once, and waits at most `budget` in all: the first search domain (in order) whose name
/// resolves wins. Startup never waits longer than `budget` on an unreachable resolver.
pub fn lookup(conf: &ResolvConf, budget: Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + budget;
    let names: Vec<String> = conf.search.iter().map(|d| format!("{SERVICE}.{d}")).collect();
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    let base = (std::process::id() as u16) & 0xff00;
    let mut sent = 0;
    for (i, name) in names.iter().enumerate() {
        for server in conf.nameservers.iter().filter(|s| s.is_ipv4()) {
            if sock.send_to(&query(base | i as u16, name), server).is_ok() {
                sent += 1;
            }
        }
    }
    // answers[i]: Some(result) once search domain i has an answer.
    let mut answers: Vec<Option<Option<String>>> = vec![None; names.len()];
    let mut buf = [0u8; 1500];
    let mut received = 0;
    while received < sent {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            break;
        }
        let Ok((n, _)) = sock.recv_from(&mut buf) else { break };
        received += 1;
        let Some(i) = buf
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .filter(|id| id & 0xff00 == base)
            .map(|id| (id & 0xff) as usize)
        else {
            continue;
        };
        let Some(name) = names.get(i) else { continue };
        let found = canonical_name(&buf[..n], base | i as u16, name).as_deref().and_then(domain_of);
        if answers[i].as_ref().is_none_or(|a| a.is_none()) {
            answers[i] = Some(found);
        }
        // Done once a domain resolved and every earlier one has answered.
        let first = answers.iter().position(|a| !matches!(a, Some(None)));
        if let Some(Some(Some(d))) = first.map(|f| &answers[f]) {
            return Some(d.clone());
        }
    }
    answers.into_iter().flatten().flatten().next()
}

/// The search list's `svc.<domain>` entry.
pub fn from_search_list(conf: &ResolvConf) -> Option<String> {
    conf.search.iter().find_map(|d| d.strip_prefix("svc.").map(str::to_owned))
}

/// Detects the cluster domain from `/etc/resolv.conf`; logs where it came from.
pub fn detect() -> Option<String> {
    let conf = parse_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").ok()?);
    if let Some(d) = lookup(&conf, Duration::from_secs(1)) {
        tracing::info!(cluster_domain = %d, "detected the cluster domain from the canonical name of {SERVICE}");
        return Some(d);
    }
    let d = from_search_list(&conf)?;
    tracing::info!(cluster_domain = %d, "detected the cluster domain from the resolver's search list ({SERVICE} did not resolve)");
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `query(id, qname)`: a CNAME to `target` then its A record.
    fn answer(id: u16, qname: &str, target: Option<&str>) -> Vec<u8> {
        let mut m = query(id, qname);
        m[2] = 0x81;
        m[3] = 0x80;
        let mut records = Vec::new();
        let mut rr = |owner: &[u8], rtype: u16, rdata: &[u8]| {
            records.extend_from_slice(owner);
            records.extend_from_slice(&rtype.to_be_bytes());
            records.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
            records.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            records.extend_from_slice(rdata);
        };
        let qptr = [0xC0, 12];
        let mut count = 1;
        match target {
            Some(t) => {
                let encoded = &query(0, t)[12..];
                let encoded = &encoded[..encoded.len() - 4];
                rr(&qptr, 5, encoded);
                rr(encoded, 1, &[10, 0, 0, 1]);
                count = 2;
            }
            None => rr(&qptr, 1, &[10, 0, 0, 1]),
        }
        m[7] = count;
        m.extend_from_slice(&records);
        m
    }

    #[test]
    fn resolv_conf_of_a_pod() {
        let c = parse_resolv_conf(
            "search spire-server.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
        );
        assert_eq!(c.search, ["spire-server.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
        assert_eq!(c.nameservers, ["10.96.0.10:53".parse().unwrap()]);
        assert_eq!(from_search_list(&c).as_deref(), Some("cluster.local"));
    }

    #[test]
    fn canonical_names() {
        let q = "kubernetes.default.svc.cluster.local";
        assert_eq!(canonical_name(&answer(7, q, None), 7, q).as_deref(), Some(q));
        assert_eq!(canonical_name(&answer(7, q, None), 8, q), None, "another query's answer");
        let cname = "kubernetes.default.svc.corp.example";
        assert_eq!(canonical_name(&answer(7, q, Some(cname)), 7, q).as_deref(), Some(cname));
        assert_eq!(domain_of(cname).as_deref(), Some("corp.example"));
        assert_eq!(domain_of("kubernetes.default.svc."), None);
        let mut nx = answer(7, q, None);
        nx[3] = 0x83; // NXDOMAIN
        assert_eq!(canonical_name(&nx, 7, q), None);
        // Garbage never panics.
        for n in 0..40 {
            let _ = canonical_name(&answer(7, q, Some(cname))[..n], 7, q);
        }
        let mut loop_ptr = answer(7, q, None);
        let at = loop_ptr.len() - 16;
        loop_ptr[at] = 0xC0;
        loop_ptr[at + 1] = at as u8;
        let _ = canonical_name(&loop_ptr, 7, q);
    }

    #[test]
    fn lookup_walks_the_search_list_against_a_name_server() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            for _ in 0..3 {
                let Ok((n, from)) = server.recv_from(&mut buf) else { return };
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                let qname = read_name(&buf[..n], 12).unwrap().0;
                let mut reply = answer(id, &qname, None);
                if qname != "kubernetes.default.svc.cluster.local" {
                    reply[3] = 0x83;
                }
                let _ = server.send_to(&reply, from);
            }
        });
        let conf = ResolvConf {
            nameservers: vec![addr],
            search: vec!["ns1.svc.cluster.local".into(), "svc.cluster.local".into(), "cluster.local".into()],
        };
        assert_eq!(lookup(&conf, Duration::from_secs(2)).as_deref(), Some("cluster.local"));
    }
}
